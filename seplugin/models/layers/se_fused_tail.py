"""The tail of a standard SE residual unit, ``relu(se(bn(z)) + identity)``, as four passes.

With ``z`` the last conv's output, per-(n, c) sums of ``z`` give both the BN statistics
(summed over n, Chan's merge) and the squeeze, since ``mean_hw(bn(z)) = alpha * (mean_hw(z)
- mu) + beta`` per channel; the output is then one pass, ``relu((z - mu) * a + b +
identity)`` with ``a = gate * alpha`` and ``b = gate * beta`` per (n, c): ``bn(z)`` is
never made. Backward, with ``g = relu'(out) * grad_out`` (the shortcut's gradient) and the
per-(n, c) sums of ``g`` and ``g * (z - mu)`` from one pass, the gate's gradient is
``alpha * sum(g (z - mu)) + beta * sum(g)``, the squeeze's gradient comes from the two
small FCs, and BN's backward of ``gate * g + d_squeeze / HW`` needs only those sums, so
``grad_z = A * g + B * (z - mu) + E`` is one more pass. Two passes each way, as many as
the plain block's BN + add + ReLU make, and nothing kept but ``z`` (BN keeps it anyway) and
the output (the next block keeps it anyway). Sums accumulate in float64 and ``z - mu`` is
formed before scaling, so a large ``|mean| / std`` does not cancel.

``fused_tail`` runs the passes as C++ kernels (``se_fused_tail.cpp``, compiled at the first
use and cached by torch's extension builder) on CPU maps of float32/float64;
``fused_tail_formula`` is the same algebra in plain differentiable ops, for
``torch.compile`` to fuse into a reduction and a pointwise pass on any device. Whether a
block takes either is decided in ``SEBlockMixin.why_not_lean_tail`` and
``SEBlockMixin.why_not_fused_tail``.
"""
import warnings
from pathlib import Path

import torch
from mmengine.logging import print_log
from torch import nn

from seplugin.models.layers.se_residual import (
    _env_switch,
    _NoDoubleBackward,
    batch_norm_momentum,
)

FUSED_TAIL_ENV = 'SEPLUGIN_FUSED_TAIL'
SOURCE = Path(__file__).with_name('se_fused_tail.cpp')


def fused_tail_env() -> bool:
    """The process-wide switch: ``SEPLUGIN_FUSED_TAIL=0`` keeps the lean tail."""
    return _env_switch(FUSED_TAIL_ENV, '1', 'fused SE tail')


_kernels = None  # the compiled extension, made at the first use; False: unavailable
_kernels_error = ''


def _build_flags() -> tuple[str, list[str]]:
    """(a name naming the instruction set, compiler flags): the cache must not hand a
    build for one CPU to another (AVX2 code on a CPU without it)."""
    capability = getattr(getattr(torch.backends, 'cpu', None), 'get_cpu_capability',
                         lambda: 'DEFAULT')()
    flags = ['-O3', '-fopenmp']
    if capability in ('AVX2', 'AVX512'):
        flags += ['-mavx2', '-mfma']
    else:
        capability = 'DEFAULT'
    return f'seplugin_se_tail_{capability.lower()}', flags


def kernels():
    """The fused tail's CPU kernels, or None where they cannot be built here (no C++
    compiler or ninja): then warns once, naming the cause, and the lean tail runs."""
    global _kernels, _kernels_error
    if _kernels is None:
        name, flags = _build_flags()
        try:
            from torch.utils import cpp_extension
            from torch.utils.cpp_extension import load
            build_dir = getattr(cpp_extension, '_get_build_directory', None)  # private
            if build_dir is None or not (Path(build_dir(name, verbose=False))
                                         / f'{name}.so').exists():
                # Only a build makes the user wait; a load from the cache stays silent.
                print_log(f'seplugin: building the fused SE tail kernels ({name}, about a '
                          "minute, once; later runs load torch's extension cache)",
                          logger='current')
            _kernels = load(name, [str(SOURCE)], extra_cflags=flags,
                            extra_ldflags=['-fopenmp'], verbose=False)
        except Exception as e:  # noqa: BLE001 - any build failure means: lean tail
            _kernels = False
            _kernels_error = f'{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}'
            warnings.warn(f'seplugin: the fused SE tail cannot be built here '
                          f'({_kernels_error}); the lean tail runs instead. Set '
                          f'{FUSED_TAIL_ENV}=0 to not try.', stacklevel=2)
    return _kernels or None


def kernels_state() -> str:
    """'unused', 'built' or 'unavailable: <why>', for reports."""
    if _kernels is None:
        return 'unused'
    return 'built' if _kernels else f'unavailable: {_kernels_error}'


def _stats(bn: nn.BatchNorm2d, mean_nc: torch.Tensor, m2_nc: torch.Tensor,
           hw: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(mu, invstd) per channel in float64, whether they are batch statistics; updates the
    running statistics and ``num_batches_tracked`` as ``_BatchNorm.forward`` does."""
    n = mean_nc.shape[0]
    batch_stats = bn.training or (bn.running_mean is None and bn.running_var is None)
    if not batch_stats:
        mu, var = bn.running_mean.double(), bn.running_var.double()
        return mu, torch.rsqrt(var + bn.eps), False
    mu = mean_nc.mean(0)
    var = (m2_nc.sum(0) + hw * (mean_nc - mu).square().sum(0)) / (n * hw)
    if bn.training and bn.track_running_stats:
        momentum = batch_norm_momentum(bn)
        if bn.running_mean is not None:
            unbiased = var * (n * hw / (n * hw - 1))
            dtype = bn.running_mean.dtype
            bn.running_mean.copy_(momentum * mu.to(dtype) + (1 - momentum) * bn.running_mean)
            bn.running_var.copy_(momentum * unbiased.to(dtype)
                                 + (1 - momentum) * bn.running_var)
    return mu, torch.rsqrt(var + bn.eps), True


def _affine(bn: nn.BatchNorm2d, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """BN's weight and bias in float64 (1 and 0 without affine)."""
    if bn.weight is None:
        return like.new_ones(like.shape[-1]), like.new_zeros(like.shape[-1])
    return bn.weight.detach().double(), bn.bias.detach().double()


class _FusedSETail(torch.autograd.Function):
    """``relu(se_layer(bn(z)) + identity)`` for a training-mode or eval-mode BatchNorm2d,
    with the SE layer's FC parameters as inputs so that their gradients flow."""

    @staticmethod
    def forward(ctx, z, identity, bn, se, ops, bn_weight, bn_bias, *fc_params):
        hw = z.shape[2] * z.shape[3]
        if bn.training and z.numel() == z.shape[1]:
            raise ValueError(f'Expected more than 1 value per channel when training, got '
                             f'input size {z.size()}')  # as BatchNorm says it
        mean_nc, m2_nc = ops.plane_stats(z)
        mu, invstd, batch_stats = _stats(bn, mean_nc, m2_nc, hw)
        w, b = _affine(bn, mean_nc)
        alpha = w * invstd
        deviation = mean_nc - mu  # of each plane's mean from the channel's, O(std)
        gate = se.gate_from_squeeze((alpha * deviation + b).to(z.dtype)).double()
        out = ops.forward(z, identity, mu.to(z.dtype), (gate * alpha).to(z.dtype),
                          (gate * b).to(z.dtype))
        ctx.bn, ctx.se, ctx.ops, ctx.hw, ctx.batch_stats = bn, se, ops, hw, batch_stats
        # as little as the lean tail keeps: the gate is recomputed from the deviation
        ctx.save_for_backward(z, out, deviation.to(torch.promote_types(z.dtype, torch.float32)),
                              mu, invstd)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        z, out, deviation, mu, invstd = ctx.saved_tensors
        deviation = deviation.double()
        ops, hw, se = ctx.ops, ctx.hw, ctx.se
        format_ = torch.channels_last if not z.is_contiguous() else torch.contiguous_format
        g, (s1, s2) = ops.backward_sums(grad_out.contiguous(memory_format=format_), out, z,
                                        mu)
        # bn's weight, bias: read as in forward (an optimizer has not stepped in between)
        norm_grads = ctx.needs_input_grad[5] or ctx.needs_input_grad[6]
        w, b = _affine(ctx.bn, mu)
        alpha = w * invstd
        grad_gate = alpha * s2 + b * s1
        fc = [i for i, need in enumerate(ctx.needs_input_grad[7:]) if need]
        with torch.enable_grad():
            leaf = (alpha * deviation + b).to(z.dtype).requires_grad_()
            params = se.fc_parameters()
            gate = se.gate_from_squeeze(leaf)
            grads = torch.autograd.grad(gate, [leaf] + [params[i] for i in fc],
                                        grad_gate.to(z.dtype))
        gate = gate.detach().double()
        q = grads[0].double() / hw  # the squeeze's gradient, per element of the plane
        grad_sum = gate * s1 + hw * q                                # sum_hw d(bn out)
        grad_dev_sum = gate * s2 + q * hw * deviation                # ... times (z - mu)
        A, E = alpha * gate, alpha * q
        B = torch.zeros_like(mu)
        if ctx.batch_stats:
            count = z.shape[0] * hw
            B = -alpha * invstd.square() * grad_dev_sum.sum(0) / count
            E = E - alpha * grad_sum.sum(0) / count
        dtype = z.dtype
        grad_z = ops.backward(g, z, mu.to(dtype), A.to(dtype), B.to(dtype), E.to(dtype))
        grad_weight = grad_bias = None
        if norm_grads:
            grad_weight = (invstd * grad_dev_sum.sum(0)).to(dtype)
            grad_bias = grad_sum.sum(0).to(dtype)
        fc_grads = [None] * len(ctx.needs_input_grad[7:])
        for i, grad in zip(fc, grads[1:]):
            fc_grads[i] = grad
        result = [grad_z, g if ctx.needs_input_grad[1] else None, None, None, None,
                  grad_weight, grad_bias, *fc_grads]
        if torch.is_grad_enabled():  # create_graph=True: not differentiable again
            anchor = grad_out.new_empty(0).requires_grad_()
            index = [i for i, r in enumerate(result) if r is not None]
            for i, r in zip(index, _NoDoubleBackward.apply(anchor, *[result[i] for i in index])):
                result[i] = r
        return tuple(result)


def fused_tail(z: torch.Tensor, identity: torch.Tensor, bn: nn.BatchNorm2d,
               se: nn.Module, ops) -> torch.Tensor:
    """``relu(se(bn(z)) + identity)`` by the CPU kernels ``ops`` (see :func:`kernels`);
    ``bn`` is a torch ``BatchNorm2d``, ``se`` an ``SELayer`` with the 'avg' squeeze."""
    params = se.fc_parameters()
    if not (torch.is_grad_enabled() and any(
            t is not None and t.requires_grad
            for t in (z, identity, bn.weight, bn.bias, *params))):
        with torch.no_grad():
            return _FusedSETail.forward(_Forward(), z, identity, bn, se, ops, None, None)
    return _FusedSETail.apply(z, identity, bn, se, ops, bn.weight, bn.bias, *params)


class _Forward:
    """A stand-in for autograd's context where no backward will run."""

    def save_for_backward(self, *tensors):
        pass


def fused_tail_formula(z: torch.Tensor, identity: torch.Tensor, bn: nn.BatchNorm2d,
                       se: nn.Module) -> torch.Tensor:
    """The same algebra in plain differentiable ops, for ``torch.compile`` to fuse into
    one reduction and one pointwise pass (eagerly it is slower than the lean tail)."""
    hw = z.shape[2] * z.shape[3]
    acc = torch.promote_types(z.dtype, torch.float32)
    var_nc, mean_nc = torch.var_mean(z.to(acc), dim=(2, 3), correction=0)
    batch_stats = bn.training or (bn.running_mean is None and bn.running_var is None)
    if batch_stats:
        with torch.no_grad():  # the running statistics, as _BatchNorm.forward does
            _stats(bn, mean_nc.detach(), var_nc.detach() * hw, hw)
        mu = mean_nc.mean(0)
        var = (var_nc + (mean_nc - mu).square()).mean(0)
    else:
        mu, var = bn.running_mean.to(acc), bn.running_var.to(acc)
    alpha = torch.rsqrt(var + bn.eps)
    shift = torch.zeros_like(alpha)
    if bn.weight is not None:
        alpha, shift = alpha * bn.weight, bn.bias.to(acc)
    gate = se.gate_from_squeeze((alpha * (mean_nc - mu) + shift).to(z.dtype)).to(acc)
    scale, bias = (gate * alpha)[:, :, None, None], (gate * shift)[:, :, None, None]
    return torch.relu((z - mu[:, None, None]) * scale + bias + identity).to(z.dtype)
