"""SE placement inside MMDetection's residual blocks, written once for every block type.

The blocks keep mmdet's layers, names and options (dcn, plugins, style, with_cp, conv and
norm configs); the SE layer is one more child named ``se_layer``, so checkpoints of
mmpretrain's SE-ResNet load unchanged. Only the residual unit (shortcut, addition, final
ReLU) is written here, because the paper's placements need to reach both of its paths.
"""
import importlib

import torch
import torch.utils.checkpoint as cp
from mmcv.cnn.bricks import DropPath
from mmdet.models.backbones.resnet import BasicBlock, Bottleneck
from mmdet.models.backbones.resnext import Bottleneck as ResNeXtBottleneck
from torch import nn

from seplugin.models.layers.se_fused_tail import (
    FUSED_TAIL_ENV,
    fused_tail,
    fused_tail_env,
    fused_tail_formula,
    kernels,
    kernels_state,
)
from seplugin.models.layers.se_layer import SELayer
from seplugin.models.layers.se_residual import (
    LEAN_TAIL_ENV,
    batch_norm_affine,
    compiled_tail_env,
    lean_tail_env,
    se_residual_relu,
)

# Where SE sits in a residual unit (the paper's integration study, Fig. 5 and Table 14):
SE_POSITIONS = (
    'standard',  # on the residual branch after its last BN, before the addition
    'pre',       # on the unit's input, feeding the residual branch only
    'post',      # after the addition and the final ReLU
    'identity',  # on the shortcut, in parallel with the residual branch
    '3x3',       # after the 3x3 conv (+BN+ReLU) of a bottleneck: the paper's SE_3x3
)
# Module hooks the lean tail would bypass (torch keeps the global ones as _global<name>).
_HOOK_DICTS = ('_forward_hooks', '_forward_pre_hooks', '_backward_hooks',
               '_backward_pre_hooks')
# Dispatch modes that observe the lean tail as what it is (seplugin's memory counter
# measures it); any other active mode (make_fx, FakeTensor, FlopCounterMode, ...) sends
# the block to the plain path.
LEAN_TAIL_OBSERVERS = ('seplugin.analysis.memory.PeakTensorMemory',)


def _private(module: str, name: str):
    """A private torch name, or None where this torch does not have it (then the probe
    that needs it cannot answer, and the plain path runs)."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


_dispatch_modes = _private('torch.utils._python_dispatch', '_get_current_dispatch_mode_stack')
_fx_tracing = (_private('torch.fx._symbolic_trace', 'is_fx_symbolic_tracing')  # newer torch
               or _private('torch.fx._symbolic_trace', 'is_fx_tracing'))         # torch 2.1
_functorch_active = _private('torch._C', '_are_functorch_transforms_active')
_forward_ad = _private('torch.autograd', 'forward_ad')
# torch.compile's or torch.export's tracing. Looked up once here: torch 2.1's compiler
# stops tracing (a graph break) at a getattr on a module inside the guard.
_is_compiling = getattr(torch.compiler, 'is_compiling', None) \
    or _private('torch._dynamo', 'is_compiling')  # torch < 2.3
# torch.export's tracing (torch >= 2.5): the plain graph is exported; torch.compile (not
# exporting) gets the fused formula where the rest of the guard allows it.
_is_exporting = getattr(torch.compiler, 'is_exporting', None)


def _global_module_hooks() -> bool:
    """Whether hooks registered for every module (``register_module_forward_hook``...) exist."""
    module = torch.nn.modules.module
    return any(getattr(module, f'_global{name}', None) for name in _HOOK_DICTS)


def active_transform() -> str:
    """A tracer, transform or mode active now that the lean tail must not meet; '' when
    none is, and a reason too when a probe cannot answer on this torch. The compiler and
    scripting are asked first by the guard itself (they must trace it whole)."""
    if _dispatch_modes is None:
        return 'cannot tell whether a torch dispatch mode is active on this torch'
    for mode in _dispatch_modes():
        name = f'{type(mode).__module__}.{type(mode).__qualname__}'
        if name not in LEAN_TAIL_OBSERVERS:
            return f'a torch dispatch mode is active ({type(mode).__name__}: make_fx, ' \
                   'torch.export, FakeTensor, FLOP counters, ...)'
    if _fx_tracing is None:
        return 'cannot tell whether torch.fx is tracing on this torch'
    if _fx_tracing():
        return 'torch.fx symbolic tracing'
    if torch.onnx.is_in_onnx_export():
        return 'ONNX export'
    if torch.jit.is_tracing():
        return 'torch.jit tracing'
    if _functorch_active is None:
        return 'cannot tell whether a torch.func transform is active on this torch'
    if _functorch_active():
        return 'a torch.func transform (vmap, grad, jvp, ...)'
    level = getattr(_forward_ad, '_current_level', None)
    if not isinstance(level, int):
        return 'cannot tell whether forward-mode AD is active on this torch'
    if level >= 0:
        return 'forward-mode AD (torch.autograd.forward_ad)'
    return ''


class SEBlockMixin:
    """Adds one optional SE layer and stochastic depth to an mmdet residual block.

    The SE layer arrives as a plugin entry ``dict(cfg=dict(type='SELayer', ...),
    position=<one of SE_POSITIONS>)``, so SE-ResNet selects stages with mmdet's own
    ``plugins``/``stages`` mechanism. Other plugin entries are left to the block.

    Args:
        drop_path_rate (float): Stochastic depth on the residual branch, as in mmpretrain.
    """

    def __init__(self, *args, plugins: list[dict] | None = None,
                 drop_path_rate: float = 0.0, **kwargs) -> None:
        plugins = list(plugins or [])
        se_plugins = [p for p in plugins if p['position'] in SE_POSITIONS]
        block_plugins = [p for p in plugins if p['position'] not in SE_POSITIONS]
        if len(se_plugins) > 1:
            raise ValueError(f'a block takes at most one SE placement, got {se_plugins}')
        if block_plugins and not isinstance(self, Bottleneck):
            raise ValueError(
                f'{type(self).__name__} cannot take plugins at '
                f'{[p["position"] for p in block_plugins]}: mmdet plugins need a '
                'Bottleneck block (depth >= 50)')
        super().__init__(*args, plugins=block_plugins or None, **kwargs)

        self.se_position = se_plugins[0]['position'] if se_plugins else None
        if self.se_position is not None:
            cfg = dict(se_plugins[0]['cfg'])
            if cfg.pop('type', 'SELayer') not in ('SELayer', SELayer):
                raise ValueError(f'an SE placement needs an SELayer cfg, got {se_plugins[0]}')
            self.se_layer = SELayer(self._se_channels(self.se_position), **cfg)
        self.set_drop_path(drop_path_rate)

    def set_drop_path(self, rate: float) -> None:
        """Stochastic depth on the residual branch with drop probability ``rate``."""
        self.drop_path = DropPath(rate) if rate > 0 else nn.Identity()
        self._record_built_modules()

    def _se_channels(self, position: str) -> int:
        if position == 'pre':
            return self.conv1.in_channels
        if position == '3x3':
            if not isinstance(self, Bottleneck):
                raise ValueError(
                    f"SE position '3x3' needs a Bottleneck block, not "
                    f'{type(self).__name__}: both convs of a BasicBlock are 3x3. '
                    f'Use one of {[p for p in SE_POSITIONS if p != "3x3"]}')
            return self.conv2.out_channels
        return self.conv1.out_channels if isinstance(self, BasicBlock) \
            else self.conv3.out_channels

    @torch.no_grad()
    def start_se_neutral(self) -> str:
        """Make the SE layer a no-op, for a trunk just loaded from a plain (non-SE) ResNet.

        The SE gate is made constant (:meth:`SELayer.start_constant`) and the layer whose
        output it multiplies is divided by that constant: the branch's last BN
        ('standard'), the 3x3 conv's BN ('3x3': ReLU commutes with a positive scale), the
        shortcut's BN ('identity' with a downsample), each weight and bias; or the first
        conv's weight only ('pre': ``conv(g * x)`` with weight ``w / g`` is ``w * x + b``).
        The block then computes exactly what the plain block computed, while the SE layer
        receives gradients from the first step. Where nothing can absorb the constant
        ('post', 'identity' on a plain shortcut, an affine-free norm, mmdet plugins between
        the last BN and SE) the gate starts as close to 1 as it gets.

        Call it once per load of the trunk: a second call divides again. SE backbones call
        it themselves when a state dict without SE weights is loaded (see
        :meth:`SEResNet._load_from_state_dict`). Returns a description for the log.
        """
        absorber, scales_bias = self._se_absorber()
        if absorber is None:
            return f'gate {self.se_layer.start_constant("one"):.6f} (nothing to absorb it)'
        gate = self.se_layer.start_constant('steep')
        absorber.weight.div_(gate)
        if scales_bias and absorber.bias is not None:
            absorber.bias.div_(gate)
        return f'gate {gate:g}, divided out of {type(absorber).__name__}'

    def _se_absorber(self) -> tuple[nn.Module | None, bool]:
        """(the layer that can take the constant SE gate, whether its bias scales too)."""
        position = self.se_position
        if position == 'pre':
            absorber, scales_bias = self.conv1, False
        elif position == 'standard' and not getattr(self, 'after_conv3_plugin_names', None):
            absorber, scales_bias = self.last_norm, True
        elif position == '3x3':
            absorber, scales_bias = self.norm2, True
        elif position == 'identity' and self.downsample is not None:
            absorber, scales_bias = self.downsample[-1], True
        else:
            return None, False
        if getattr(absorber, 'weight', None) is None:
            return None, False
        return absorber, scales_bias

    @property
    def last_norm(self) -> nn.Module:
        """The BN that ends the residual branch (zero-initialised by zero_init_residual)."""
        return self.norm2 if isinstance(self, BasicBlock) else self.norm3

    def residual_branch(self, x: torch.Tensor) -> torch.Tensor:
        """The block's conv-BN-ReLU branch up to its last conv; :meth:`branch_end` follows."""
        if isinstance(self, BasicBlock):
            return self.conv2(self.relu(self.norm1(self.conv1(x))))
        out = self.relu(self.norm1(self.conv1(x)))
        if self.with_plugins:
            out = self.forward_plugin(out, self.after_conv1_plugin_names)
        out = self.relu(self.norm2(self.conv2(out)))
        if self.se_position == '3x3':
            out = self.se_layer(out)
        if self.with_plugins:
            out = self.forward_plugin(out, self.after_conv2_plugin_names)
        return self.conv3(out)

    def branch_end(self, x: torch.Tensor) -> torch.Tensor:
        """The last BN of the residual branch and the plugins after the last conv."""
        out = self.last_norm(x)
        if isinstance(self, Bottleneck) and self.with_plugins:
            out = self.forward_plugin(out, self.after_conv3_plugin_names)
        return out

    # Per-block switch of the lean SE tail (also SEPLUGIN_LEAN_TAIL=0 for the process).
    lean_tail: bool = True
    # Per-block opt-in: the lean tail's backward compiled into one pass (also
    # SEPLUGIN_COMPILED_TAIL=1 for the process); taken only where the lean tail is.
    compiled_tail: bool = False

    def why_not_lean_tail(self, x: torch.Tensor) -> str:
        """Why this block does not take the lean SE tail for input ``x``; '' when it does.

        The lean tail (``se_residual.py``) computes ``relu(bn(z) * gate + identity)``
        without calling the last norm, the SE layer, its convs, ``drop_path`` or the final
        ReLU as modules, and without keeping ``bn(z)`` for backward. It is taken only where
        nobody can tell the difference, as torch's own fast paths
        (``nn.MultiheadAttention``) decide; otherwise the block calls every module as the
        plain formula does, with the same numbers. One rule covers the modules: every
        module of the block is of the class the block built and has no hook (see
        :meth:`_module_not_as_built`), so no list of names can miss one. This is the
        single entry point for any fused SE tail.
        """
        # Tracers first, before anything is read from a tensor: FX's proxies cannot
        # answer data-dependent questions.
        if torch.jit.is_scripting():
            return 'torch.jit scripting'
        if _is_compiling is None:
            return 'cannot tell whether torch.compile is tracing on this torch'
        compiling = _is_compiling()
        if compiling and (_is_exporting is None or _is_exporting()):
            # first: what follows would stop torch 2.1's compiler tracing here, and the
            # rest of the guard would then run uncompiled, where it sees no compiler.
            # torch.export (and compiling on torch < 2.5) sees the plain graph.
            return 'torch.export tracing, or torch.compile on a torch without ' \
                'torch.compiler.is_exporting' if _is_exporting is None \
                else 'torch.export tracing'
        reason = '' if compiling else active_transform()
        if reason:
            return reason
        if not self.lean_tail:
            return 'switched off: lean_tail is False'
        if not lean_tail_env():
            return f'switched off: {LEAN_TAIL_ENV}=0'
        if self.se_position != 'standard':
            return f'SE position {self.se_position!r} (the lean tail is the standard one)'
        if getattr(self, 'after_conv3_plugin_names', None):
            return f'plugins after the last conv: {self.after_conv3_plugin_names}'
        if self.training and isinstance(self.drop_path, DropPath):
            return 'stochastic depth while training'
        # module dicts read directly: this runs on every forward
        norm, se = self.last_norm, self._modules['se_layer']
        if type(norm) is not nn.BatchNorm2d:
            return f'the last norm is {type(norm).__name__}, not torch.nn.BatchNorm2d'
        reason = self._module_not_as_built()
        if reason:
            return reason
        if se.squeeze != 'avg':
            # amax's backward keeps the map that the lean tail overwrites with its output
            return f"SE squeeze {se.squeeze!r} (the lean tail implements 'avg')"
        if _global_module_hooks():
            return 'global module hooks'
        if compiling:
            return ''  # the compiler traces tensor subclasses itself
        tensors = [x, *norm._parameters.values(), *norm._buffers.values()]
        for conv in (se.conv1.conv, se.conv2.conv):
            tensors += conv._parameters.values()
        if torch.overrides.has_torch_function(tensors):
            return 'a tensor subclass or __torch_function__ override'
        return ''

    # Per-block switch of the fused SE tail (also SEPLUGIN_FUSED_TAIL=0 for the process).
    fused_tail: bool = True

    def why_not_fused_tail(self, z: torch.Tensor, identity: torch.Tensor) -> str:
        """Where the lean tail is allowed (:meth:`why_not_lean_tail` is ''), why its
        eager form is not the fused one (``se_fused_tail.py``) for the last conv's output
        ``z`` and the shortcut ``identity``; '' when it is. Under ``torch.compile`` the
        fused formula runs instead, on any device."""
        if not self.fused_tail:
            return 'switched off: fused_tail is False'
        if not fused_tail_env():
            return f'switched off: {FUSED_TAIL_ENV}=0'
        if self.compiled_tail or compiled_tail_env():
            return 'the lean tail with the compiled backward was asked for (compiled_tail)'
        if z.device.type != 'cpu':
            return f'the fused kernels are for CPU maps, not {z.device.type}'
        if z.dtype not in (torch.float32, torch.float64):
            return f'the fused kernels take float32/float64 maps, not {z.dtype}'
        if not (z.is_contiguous() or z.is_contiguous(memory_format=torch.channels_last)):
            return 'the map is neither contiguous nor channels_last'
        if identity.shape != z.shape or identity.stride() != z.stride() \
                or identity.dtype != z.dtype:
            return 'the shortcut differs from the map in shape, layout or dtype'
        if kernels() is None:
            return f'the fused kernels are {kernels_state()}'
        return ''

    def _record_built_modules(self) -> None:
        """Note the class of every module of the block, for :meth:`_module_not_as_built`."""
        self._built_modules = {name: type(m) for name, m in self.named_modules() if name}

    def _module_not_as_built(self) -> str:
        """'' when every module of the block is the one the block built (same names, same
        classes: no wrapper, parametrization, activation swap, observer or pruning mask
        replaced one) and none has a hook; otherwise which module differs. The block's own
        hooks do not count: the block is called as a module on both paths."""
        built = self.__dict__.get('_built_modules')
        if built is None:  # unpickled from a version that did not record them
            return 'the block has no record of the modules it built'
        count = 0
        for name, module in self.named_modules():
            if not name:
                continue
            count += 1
            cls = built.get(name)
            if cls is None:
                return f'{name} was added after the block was built'
            if type(module) is not cls:
                return f'{name} is a {type(module).__name__}, not the {cls.__name__} the ' \
                       'block built (replaced or wrapped)'
            if any(getattr(module, d) for d in _HOOK_DICTS):
                return f'hooks on {name}'
        if count != len(built):
            return 'a module the block built was removed'
        return ''

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lean = not self.why_not_lean_tail(x)
        compiled = lean and (self.compiled_tail or compiled_tail_env())

        def unit(x: torch.Tensor) -> torch.Tensor:
            identity = x if self.downsample is None else self.downsample(x)
            if self.se_position == 'identity':
                identity = self.se_layer(identity)
            out = self.residual_branch(self.se_layer(x) if self.se_position == 'pre' else x)
            if lean and _is_compiling():
                # the same algebra as plain ops, for the compiler to fuse
                return fused_tail_formula(out, identity, self.last_norm, self.se_layer)
            if lean and not self.why_not_fused_tail(out, identity):
                # relu(se(bn(out)) + identity) in two passes each way
                return fused_tail(out, identity, self.last_norm, self.se_layer, kernels())
            if lean:
                # relu(bn(out) * gate + identity), without keeping bn(out) for backward
                scaled, affine = batch_norm_affine(self.last_norm, out)
                return se_residual_relu(scaled, self.se_layer.lean_gate(scaled), identity,
                                        out, affine, compiled)
            out = self.branch_end(out)
            if self.se_position == 'standard':
                out = self.se_layer(out)
            # out of place: a full backward hook on se_layer returns a view that may not
            # be modified in place
            return self.relu(self.drop_path(out) + identity)

        if self.with_cp and x.requires_grad:
            out = cp.checkpoint(unit, x, use_reentrant=False)
        else:
            out = unit(x)
        return self.se_layer(out) if self.se_position == 'post' else out


class SEBasicBlock(SEBlockMixin, BasicBlock):
    """mmdet's BasicBlock (SE-ResNet-18/34) with an SE slot."""


class SEBottleneck(SEBlockMixin, Bottleneck):
    """mmdet's Bottleneck (SE-ResNet-50/101/152) with an SE slot."""


class SEResNeXtBottleneck(SEBlockMixin, ResNeXtBottleneck):
    """mmdet's grouped ResNeXt Bottleneck with an SE slot."""
