"""SE after any module of a built network, with the network's checkpoint keys unchanged.

A module ``M`` after which SE goes keeps its name and its parameters; its class is swapped
in place for a generated subclass (one per class, cached) whose forward is
``se_layer(M.forward(x))``, and the SE layer becomes its child ``M.se_layer``. So the keys
of ``M`` stay (``layer1.0.bn3.weight``) and SE only adds keys (``layer1.0.bn3.se_layer.*``):
a plain checkpoint loads with SE keys missing, nothing renamed.

The neutral start (:func:`start_neutral`) makes the gate a constant and divides it out of
the layer that produces ``M``'s output where a positive scale passes through unchanged (a
norm's affine, a conv or linear layer, followed only by ReLU or LeakyReLU), so the network
computes exactly what the plain one computed; elsewhere the gate starts as close to 1 as
it gets.
"""
import fnmatch
import re
import sys
from collections.abc import Iterable

import torch
from mmcv.cnn import ConvModule, DepthwiseSeparableConvModule
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from seplugin.models.layers.se_layer import SELayer

NORMS = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm)
# Activations with act(a * x) == a * act(x) for every a > 0: a constant gate passes them.
POSITIVE_HOMOGENEOUS = (nn.ReLU, nn.LeakyReLU)


class SEAfterMixin:
    """Mixed into the class of a module after which SE goes: ``se_layer(forward(x))``.

    ``se_channels_last`` marks a module whose output is (N, H, W, C) (ConvNeXt's linear
    pointwise convs): the SE layer then sees it as (N, C, H, W).
    """

    se_channels_last: bool = False

    def forward(self, *args, **kwargs) -> torch.Tensor:
        out = super().forward(*args, **kwargs)
        if self.se_channels_last:
            return self.se_layer(out.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.se_layer(out)


_SE_CLASSES: dict[type, type] = {}


def se_after_class(cls: type) -> type:
    """The class ``SE<cls>``: ``cls`` with SE after its output (cached, picklable)."""
    if issubclass(cls, SEAfterMixin):
        return cls
    if cls not in _SE_CLASSES:
        name = f'SE{cls.__name__}'
        unique, n = name, 1
        module = sys.modules[__name__]
        while hasattr(module, unique):  # same class name in two libraries
            n += 1
            unique = f'{name}_{n}'
        new = type(name, (SEAfterMixin, cls), {'__module__': __name__,
                                                '__qualname__': unique})
        setattr(module, unique, new)  # found by pickle under its qualname
        _SE_CLASSES[cls] = new
    return _SE_CLASSES[cls]


def register_se_after_class(cls: type, se_cls: type) -> None:
    """Use ``se_cls`` (an SEAfterMixin subclass of ``cls``) as ``SE<cls>``."""
    _SE_CLASSES[cls] = se_cls


def output_channels(module: nn.Module) -> int | None:
    """Channels of ``module``'s output as read from its layers; None when they cannot be."""
    if isinstance(module, DepthwiseSeparableConvModule):
        return module.pointwise_conv.out_channels
    if isinstance(getattr(module, 'out_channels', None), int):  # convs, ConvModules
        return module.out_channels
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, (_BatchNorm, _InstanceNorm)):
        return module.num_features
    if isinstance(module, nn.GroupNorm):
        return module.num_channels
    if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) == 1:
        return module.normalized_shape[0]
    if isinstance(module, nn.Sequential) and len(module):
        return output_channels(module[-1])
    return None


def add_se_after(module: nn.Module, channels: int, se_cfg: dict,
                 channels_last: bool = False) -> SELayer:
    """Put an SE layer of ``channels`` after ``module``, in place: it becomes
    ``module.se_layer`` and ``module``'s class ``SE<class>``. Returns the SE layer."""
    if isinstance(module, SEAfterMixin) or 'se_layer' in module._modules:
        raise ValueError(f'{type(module).__name__} already has an SE layer after it')
    se = SELayer(channels, **se_cfg)
    module.se_layer = se
    module.__class__ = se_after_class(type(module))
    if channels_last:
        module.se_channels_last = True
    return se


def restore_se_classes(root: nn.Module, names: Iterable[str]) -> None:
    """Give the SE class back to modules that a converter replaced by a plain copy of
    their class (``SyncBatchNorm.convert_sync_batchnorm`` and mmengine's
    ``revert_sync_batchnorm`` rebuild norms, and carry ``se_layer`` over as a child)."""
    for name in names:
        module = root.get_submodule(name)
        if not isinstance(module, SEAfterMixin) and 'se_layer' in module._modules:
            module.__class__ = se_after_class(type(module))


def _scaled_layer(module: nn.Module) -> nn.Module | None:
    """The layer of ``module`` whose weight (and bias) scale its output: a positive
    factor on it scales the output by the same factor. None when there is none."""
    if isinstance(module, NORMS):
        affine = getattr(module, 'weight', None) is not None
        return module if affine else None
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
        return module
    if isinstance(module, DepthwiseSeparableConvModule):
        return _scaled_layer(module.pointwise_conv)
    if isinstance(module, ConvModule):
        for layer in reversed(module.order):
            if layer == 'act':
                if module.with_activation and not isinstance(module.activate,
                                                             POSITIVE_HOMOGENEOUS):
                    return None
            elif layer == 'norm':
                if module.with_norm:
                    return _scaled_layer(module.norm)
            elif layer == 'conv':
                return _scaled_layer(module.conv)
        return None
    if isinstance(module, nn.Sequential) and len(module):
        last = list(module)
        while last and isinstance(last[-1], POSITIVE_HOMOGENEOUS):
            last.pop()
        return _scaled_layer(last[-1]) if last else None
    return None


@torch.no_grad()
def start_neutral(module: nn.Module) -> str:
    """Make the SE layer after ``module`` a no-op, for weights just loaded from the plain
    network: a constant gate (:meth:`SELayer.start_constant`) divided out of the layer that
    scales ``module``'s output (see :func:`_scaled_layer`), so the output is exactly the
    plain one; where there is no such layer, the gate as close to 1 as it gets. Call it
    once per load: a second call divides again. Returns a description for the log."""
    se = module.se_layer
    target = _scaled_layer(module)
    if target is None:
        return f'gate {se.start_constant("one"):.6f} (nothing to absorb it)'
    gate = se.start_constant('steep')
    target.weight.div_(gate)
    if getattr(target, 'bias', None) is not None:
        target.bias.div_(gate)
    return f'gate {gate:g}, divided out of {type(target).__name__}'


def has_trunk_not_se(module: nn.Module, state_dict, prefix: str) -> bool:
    """Whether ``state_dict`` holds every parameter of ``module`` (keys under ``prefix``)
    but none of its SE layer's: the plain network's weights for it."""
    trunk = [n for n, _ in module.named_parameters() if not n.startswith('se_layer.')]
    se_prefix = f'{prefix}se_layer.'
    return bool(trunk) and all(f'{prefix}{n}' in state_dict for n in trunk) and not any(
        key.startswith(se_prefix) for key in state_dict)


def match_modules(root: nn.Module, patterns: Iterable[str]) -> list[str]:
    """Names of ``root``'s modules matching any of the ``fnmatch`` patterns, in module
    order; a ValueError names each pattern that matches nothing."""
    names = [name for name, _ in root.named_modules() if name]
    patterns = list(patterns)
    unmatched = [p for p in patterns if not fnmatch.filter(names, p)]
    if unmatched:
        raise ValueError(
            f'se_after patterns {unmatched} match no module of {type(root).__name__}; '
            f'candidates: {candidate_patterns(root)}')
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def candidate_patterns(root: nn.Module, limit: int = 40) -> list[str]:
    """Module names of ``root`` after which SE could go (norms, convs, linear layers,
    ConvModules), indices written ``*``, deduplicated: what ``se_after`` patterns match."""
    out = []
    for name, module in root.named_modules():
        if name and output_channels(module) is not None and not isinstance(
                module, nn.Sequential) and not name.endswith('se_layer') and \
                '.se_layer.' not in name:
            pattern = re.sub(r'(?<=\.)\d+(?=\.|$)|^\d+(?=\.|$)', '*', name)
            if pattern not in out:
                out.append(pattern)
    return out[:limit] + (['...'] if len(out) > limit else [])
