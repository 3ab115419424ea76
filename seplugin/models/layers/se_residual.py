"""The tail of a standard SE residual unit, ``relu(bn(z) * gate + identity)``, made lean.

Written plainly, autograd keeps ``x = bn(z)`` alive for the gradient of the gate,
``sum_hw(grad * x)``: one more activation map per block, about 24% more training memory
for SE-ResNet-50 than for ResNet-50, although SE adds 0.26% FLOPs. But a BatchNorm is
per-channel affine, ``x = alpha * z + beta``, and its own backward keeps ``z`` anyway, so
``x`` can be rebuilt in backward from ``z`` and ``alpha, beta`` (two numbers per channel,
from the statistics the BN computed in forward) with one fused multiply-add, in at least
float32. ``x`` is then dead after the forward and is overwritten by the output. Outputs and
gradients equal the plain formula's up to float rounding: the scale and addition are one
fused multiply-add, and the rebuilt ``x`` is not rounded to a half-precision dtype.
(Expanding the sum instead, ``alpha * sum_hw(grad * z) + beta * sum_hw(grad)``, needs no
rebuilt map but cancels when ``|mean(z)| >> std(z)``, where ``beta ~ -mean * alpha``.)

Eagerly, the backward makes several passes over the map (ReLU's backward, the rebuilt
``x``, ``grad * x``, its sum, ``grad * gate``) where the plain block makes one. With the
compiled tail switched on (``SEPLUGIN_COMPILED_TAIL=1`` or ``compiled_tail = True`` on the
blocks; off by default: the first backward compiles for seconds and needs a C++ compiler,
or triton on a GPU), the same backward is one function compiled by ``torch.compile``,
which fuses it into one loop reading ``grad``, the output and ``z`` once. Where it cannot
be compiled the eager backward runs, after one warning.

Whether a block may take this path at all is decided in one place,
``SEBlockMixin.why_not_lean_tail``. A later double backward (``create_graph=True``) cannot
be foreseen there; it raises an error naming the switch that turns the lean tail off.
"""
import os
import warnings

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def batch_norm_momentum(bn: nn.Module) -> float:
    """The momentum of this call of ``bn``, counting it in ``num_batches_tracked`` as
    ``_BatchNorm.forward`` does (``momentum=None``: the cumulative average's 1 / count)."""
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            momentum = 1.0 / float(bn.num_batches_tracked)
    return momentum


def batch_norm_affine(bn: nn.Module, z: torch.Tensor,
                      ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
    """``bn(z)``, and the float32 (alpha, beta) with ``bn(z) == alpha * z + beta`` per
    channel, or None when ``bn`` is not torch's own (non-synchronised) BatchNorm or no
    gradient is being recorded.

    Does what ``_BatchNorm.forward`` does (running statistics, ``num_batches_tracked``,
    cumulative averages with ``momentum=None``) through ``torch.native_batch_norm``, which
    also returns the batch statistics that ``F.batch_norm`` computes and drops.
    """
    if not (isinstance(bn, _BatchNorm) and type(bn).forward is _BatchNorm.forward
            and torch.is_grad_enabled()):
        return bn(z), None
    bn._check_input_dim(z)
    momentum = batch_norm_momentum(bn)
    batch_stats = bn.training or (bn.running_mean is None and bn.running_var is None)
    keep_running = not bn.training or bn.track_running_stats
    x, mean, invstd = torch.native_batch_norm(
        z, bn.weight, bn.bias, bn.running_mean if keep_running else None,
        bn.running_var if keep_running else None, batch_stats, momentum, bn.eps)
    dtype = torch.promote_types(z.dtype, torch.float32)
    with torch.no_grad():
        if not batch_stats:
            mean, invstd = bn.running_mean, torch.rsqrt(bn.running_var.to(dtype) + bn.eps)
        alpha = invstd.to(dtype) if bn.weight is None else invstd.to(dtype) * bn.weight
        beta = -mean.to(dtype) * alpha if bn.bias is None else bn.bias - mean.to(dtype) * alpha
    return x, (alpha, beta)


def _scale_add_relu_(x: torch.Tensor, gate: torch.Tensor,
                     identity: torch.Tensor) -> torch.Tensor:
    """``relu(x * gate + identity)`` written into ``x`` when its dtype allows: one pass of
    ``addcmul`` (a fused multiply-add, rounding once where ``x * gate + identity`` rounds
    twice) and an in-place ReLU, as cheap as a plain block's addition and ReLU."""
    if torch.promote_types(identity.dtype, torch.promote_types(x.dtype, gate.dtype)) \
            == x.dtype:
        return torch.addcmul(identity, x, gate, out=x).relu_()
    return torch.addcmul(identity, x, gate).relu_()


LEAN_TAIL_ENV = 'SEPLUGIN_LEAN_TAIL'
LEAN_TAIL_SWITCH = (f'{LEAN_TAIL_ENV}=0 in the environment, or lean_tail = False on the SE '
                    'blocks (see docs/speed_memory.md)')


COMPILED_TAIL_ENV = 'SEPLUGIN_COMPILED_TAIL'


def _env_switch(name: str, default: str, what: str) -> bool:
    """An on/off environment switch; unset or empty means ``default`` ('0' or '1')."""
    value = os.environ.get(name, default).strip().lower() or default
    if value in ('1', 'true', 'on', 'yes'):
        return True
    if value in ('0', 'false', 'off', 'no'):
        return False
    off, on = ('off, the default', 'on') if default == '0' else ('off', 'on, the default')
    raise ValueError(f'{name}={value!r} is not understood; expected 0 ({what} {off}) or 1 '
                     f'({on})')


def lean_tail_env() -> bool:
    """The process-wide switch: ``SEPLUGIN_LEAN_TAIL=0`` turns the lean tail off."""
    return _env_switch(LEAN_TAIL_ENV, '1', 'lean SE tail')


def compiled_tail_env() -> bool:
    """The process-wide opt-in: ``SEPLUGIN_COMPILED_TAIL=1`` compiles the tail's backward."""
    return _env_switch(COMPILED_TAIL_ENV, '0', 'compiled SE tail backward')


def _fused_grads(grad_out, out, gate, z, alpha, beta):
    """The lean tail's backward written as one function of the map, for the compiler:
    (grad of x, of the gate, of the identity), as ``_SEResidualReLU._grads`` computes
    them."""
    grad = torch.where(out > 0, grad_out, 0)
    x = torch.addcmul(beta[:, None, None], z.to(alpha.dtype), alpha[:, None, None])
    grad_gate = (grad.to(alpha.dtype) * x).sum((2, 3), keepdim=True).to(gate.dtype)
    return grad * gate, grad_gate, grad


_compiled_grads = None  # torch.compile(_fused_grads), made at the first use; False: failed


def compiled_tail_state() -> str:
    """What the compiled tail backward has done in this process: 'unused' (never asked
    for), 'compiled' (it ran compiled) or 'fallback' (compiling failed; the eager backward
    ran instead), for reports that must not label an eager run as compiled."""
    if _compiled_grads is None:
        return 'unused'
    return 'fallback' if _compiled_grads is False else 'compiled'


def compiled_grads(*args):
    """``_fused_grads`` compiled (dynamic shapes: detection's input sizes vary), or None
    where it cannot be compiled (then warns once and the eager backward runs)."""
    global _compiled_grads
    if _compiled_grads is None:
        _compiled_grads = torch.compile(_fused_grads, dynamic=True)
    if _compiled_grads is False:
        return None
    try:
        return _compiled_grads(*args)
    except Exception as e:  # noqa: BLE001 - any compiler failure means: run eagerly
        _compiled_grads = False
        warnings.warn(f'seplugin: the compiled SE tail backward is not available here '
                      f'({type(e).__name__}: {str(e).strip().splitlines()[0][:300]}); the '
                      f'eager backward runs instead. Unset {COMPILED_TAIL_ENV} to not try.',
                      stacklevel=2)
        return None


class _NoDoubleBackward(torch.autograd.Function):
    """Passes gradients through in a backward run with ``create_graph=True`` and raises
    when they are differentiated again (what ``once_differentiable`` does, with a message
    that names the switch)."""

    @staticmethod
    def forward(ctx, anchor, *grads):
        return tuple(g.clone() for g in grads)

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(
            "seplugin's lean SE tail has no double backward (create_graph=True followed by "
            'a backward through the gradients, e.g. a gradient penalty). Use the plain '
            f'path: {LEAN_TAIL_SWITCH}.')


class _SEResidualReLU(torch.autograd.Function):
    """``relu(x * gate + identity)`` keeping the output, the gate and either ``x`` or
    the BN input ``z`` with ``x = alpha * z + beta``."""

    @staticmethod
    def forward(ctx, x, gate, identity, z, alpha, beta, compiled=False):
        ctx.compiled = compiled
        if z is None:
            out = torch.addcmul(identity, x, gate).relu_()
            ctx.save_for_backward(out, gate, x, None, None)
            return out
        out = _scale_add_relu_(x, gate, identity)
        if out is x:
            ctx.mark_dirty(x)
        ctx.save_for_backward(out, gate, z, alpha, beta)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        out, gate, source, alpha, beta = ctx.saved_tensors
        with torch.no_grad():
            grads = _SEResidualReLU._grads(ctx, grad_out, out, gate, source, alpha, beta)
        if not torch.is_grad_enabled():
            return (*grads, None)
        # create_graph=True: the gradients must not be differentiated again
        anchor = grad_out.new_empty(0).requires_grad_()
        differentiable = [i for i, g in enumerate(grads) if g is not None]
        wrapped = _NoDoubleBackward.apply(anchor, *[grads[i] for i in differentiable])
        grads = list(grads)
        for i, g in zip(differentiable, wrapped):
            grads[i] = g
        return (*grads, None)

    @staticmethod
    def _grads(ctx, grad_out, out, gate, source, alpha, beta):
        if ctx.compiled and alpha is not None and all(ctx.needs_input_grad[:3]):
            grads = compiled_grads(grad_out, out, gate, source, alpha, beta)
            if grads is not None:
                return (*grads, None, None, None)
        # ReLU's own backward, on the output that the next block keeps anyway
        grad = torch.ops.aten.threshold_backward(grad_out, out, 0)
        buffer = grad_gate = None
        if ctx.needs_input_grad[1]:
            if alpha is None:  # source is x
                buffer = grad * source
            else:  # x = alpha * z + beta rebuilt in (at least) float32, then grad * x
                buffer = torch.addcmul(beta[:, None, None], source, alpha[:, None, None])
                buffer.mul_(grad)
            accumulate = torch.promote_types(buffer.dtype, torch.float32)
            grad_gate = buffer.sum((2, 3), keepdim=True, dtype=accumulate).to(gate.dtype)
        grad_x = None
        if ctx.needs_input_grad[0]:
            reuse = buffer is not None and buffer.dtype == torch.result_type(grad, gate)
            grad_x = torch.mul(grad, gate, out=buffer) if reuse else grad * gate
        return grad_x, grad_gate, grad if ctx.needs_input_grad[2] else None, None, None, \
            None


def se_residual_relu(x: torch.Tensor, gate: torch.Tensor, identity: torch.Tensor,
                     bn_input: torch.Tensor | None = None,
                     bn_affine: tuple[torch.Tensor, torch.Tensor] | None = None,
                     compiled: bool = False) -> torch.Tensor:
    """``relu(x * gate + identity)`` for ``x`` of shape (N, C, H, W), ``gate`` (N, C, 1, 1).

    ``x`` is consumed: its memory may hold the output, so do not use it afterwards. With
    ``x, bn_affine = batch_norm_affine(bn, bn_input)`` just before, ``x`` is not kept for
    backward either; without, it is. ``compiled``: the backward by ``compiled_grads``.
    """
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in (x, gate, identity))):
        return _scale_add_relu_(x, gate, identity)
    if bn_affine is None:
        return _SEResidualReLU.apply(x, gate, identity, None, None, None)
    return _SEResidualReLU.apply(x, gate, identity, bn_input, *bn_affine, compiled)
