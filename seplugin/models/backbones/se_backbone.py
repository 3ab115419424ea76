"""SE anywhere: one config line puts Squeeze-and-Excitation into any OpenMMLab backbone.

``dict(type='SEBackbone', backbone=<any backbone config>)`` builds that backbone and adds an
SE layer where the paper puts it for that kind of network, without renaming a single
checkpoint key (see ``seplugin/models/layers/se_after.py``):

- residual blocks: on the residual branch after its last norm, before the addition
  (``PRESETS`` lists the block families of MMDetection and MMPretrain);
- networks without residuals: after each conv block (VGG) or each module (InceptionV3);
- any other backbone: after the modules named by ``se_after`` patterns.

Plain ``ResNet`` (mmdet's or MMPretrain's) is built as :class:`SEResNet` (with its lean
SE tail), so there is one SE-ResNet whichever way it is asked for.
"""
import copy
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from seplugin.models.layers.se_after import (
    SEAfterMixin,
    add_se_after,
    candidate_patterns,
    match_modules,
    output_channels,
    restore_se_classes,
    start_neutral,
)
from seplugin.models.layers.se_host import SEHostMixin, make_se_host
from seplugin.registry import MMPRETRAIN, MODEL_REGISTRIES, MODELS

Site = tuple[str, bool]  # (module name inside the block or backbone, output is NHWC)


def _last(sequential: nn.Sequential, prefix: str) -> str:
    return f'{prefix}.{len(sequential) - 1}'


# Block class (module:qualname) -> the modules inside it after which SE goes: the end of
# the residual branch, read from each block's forward.
BLOCK_PRESETS: dict[str, Callable[[nn.Module], list[Site]]] = {
    # conv-norm-relu ... conv-normN, then + identity (ResNet, ResNetV1c/V1d, ResNeXt,
    # Res2Net, ResNeSt, RegNet, HRNet, DetectoRS, TridentNet: subclasses or these blocks)
    'mmdet.models.backbones.resnet:BasicBlock': lambda b: [(b.norm2_name, False)],
    'mmdet.models.backbones.resnet:Bottleneck': lambda b: [(b.norm3_name, False)],
    'mmpretrain.models.backbones.resnet:BasicBlock': lambda b: [(b.norm2_name, False)],
    'mmpretrain.models.backbones.resnet:Bottleneck': lambda b: [(b.norm3_name, False)],
    # MobileNetV2: expand, depthwise, linear 1x1 (ConvModule, no act), + x when it can
    'mmdet.models.layers.inverted_residual:InvertedResidual':
        lambda b: [('linear_conv', False)] if b.with_res_shortcut else [],
    'mmpretrain.models.backbones.mobilenet_v2:InvertedResidual':
        lambda b: [(_last(b.conv, 'conv'), False)] if b.use_res_connect else [],
    # ShuffleNetV1: group 1x1, shuffle, depthwise 3x3, group 1x1 (no act), + x; the
    # stride-2 units concatenate a pooled x instead and get none (the paper's 2.4M
    # parameters for SE-ShuffleNet 1x, g=3, count SE in the adding units only)
    'mmpretrain.models.backbones.shufflenet_v1:ShuffleUnit':
        lambda b: [('g_conv_1x1_expand', False)] if b.combine == 'add' else [],
    # ShuffleNetV2: branch2 = 1x1, depthwise 3x3, 1x1 + ReLU, concatenated with the split
    'mmpretrain.models.backbones.shufflenet_v2:InvertedResidual':
        lambda b: [(_last(b.branch2, 'branch2'), False)],
    # CSP blocks: conv1, conv2 (+ act), + identity when it is added
    'mmdet.models.layers.csp_layer:DarknetBottleneck':
        lambda b: [('conv2', False)] if b.add_identity else [],
    'mmdet.models.layers.csp_layer:CSPNeXtBlock':
        lambda b: [('conv2', False)] if b.add_identity else [],
    'mmpretrain.models.backbones.cspnet:DarknetBottleneck':
        lambda b: [('conv2', False)] if b.add_identity else [],
    # YOLOv3's Darknet: conv1, conv2 (+ LeakyReLU), + residual
    'mmdet.models.backbones.darknet:ResBlock': lambda b: [('conv2', False)],
    # ConvNeXt: dwconv, norm, pwconv1, act, pwconv2, then layer scale and + shortcut;
    # SE after pwconv2, before the layer scale (NHWC there with linear pointwise convs)
    'mmpretrain.models.backbones.convnext:ConvNeXtBlock':
        lambda b: [('pointwise_conv2', b.linear_pw_conv)],
}


def _vgg_sites(backbone: nn.Module) -> list[Site]:
    """After every conv block (conv, BN, ReLU) of the feature extractor."""
    from mmcv.cnn import ConvModule
    layers = getattr(backbone, backbone.module_name)
    return [(f'{backbone.module_name}.{i}', False) for i, m in enumerate(layers)
            if isinstance(m, ConvModule)]


def _inception_sites(backbone: nn.Module) -> list[Site]:
    """After every Inception module (its concatenated output), as SE-Inception does."""
    return [(name, False) for name, _ in backbone.named_children() if name.startswith('Mixed')]


# Backbone class -> its SE modules, for networks without residual blocks.
BACKBONE_PRESETS: dict[str, Callable[[nn.Module], list[Site]]] = {
    'mmpretrain.models.backbones.vgg:VGG': _vgg_sites,
    'mmpretrain.models.backbones.inception_v3:InceptionV3': _inception_sites,
}
# Presets whose module outputs cannot be read from their layers: channels measured once
PROBE_SIZES = {'mmpretrain.models.backbones.inception_v3:InceptionV3': 128}


def _key(cls: type) -> str:
    return f'{cls.__module__}:{cls.__qualname__}'


def _preset(table: dict, cls: type):
    """The preset of ``cls`` or of its nearest base class that has one."""
    for base in cls.__mro__:
        if _key(base) in table:
            return table[_key(base)]
    return None


def preset_sites(backbone: nn.Module) -> list[str | Site]:
    """The SE sites the presets give ``backbone`` (names of modules), in module order."""
    whole = _preset(BACKBONE_PRESETS, type(backbone))
    if whole is not None:
        return whole(backbone)
    sites = []
    for name, module in backbone.named_modules():
        preset = _preset(BLOCK_PRESETS, type(module))
        if preset is not None:
            sites += [(f'{name}.{site}' if name else site, last) for site, last in
                      preset(module)]
    return sites


def stage_prefixes(backbone: nn.Module) -> list[list[str]] | None:
    """For each stage of ``backbone``, the module names it holds; None when it has none."""
    if isinstance(getattr(backbone, 'res_layers', None), list):  # ResNet family, RegNet
        return [[name] for name in backbone.res_layers]
    if _key(type(backbone)).endswith('hrnet:HRNet'):
        return [['layer1'], ['stage2'], ['stage3'], ['stage4']]
    if hasattr(backbone, 'range_sub_modules'):  # VGG
        return [[f'{backbone.module_name}.{j}' for j in range(*r)]
                for r in backbone.range_sub_modules]
    for attr in ('layers', 'stages'):
        layers = getattr(backbone, attr, None)
        if isinstance(layers, list) and layers and all(isinstance(n, str) for n in layers):
            return [[n] for n in layers if n != 'stem']  # MobileNetV2, CSPDarknet, ...
        if isinstance(layers, nn.ModuleList):  # ShuffleNet, ConvNeXt, CSPNet
            return [[f'{attr}.{i}'] for i in range(len(layers))]
    return None


def _in(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(f'{prefix}.')


def _probe_channels(backbone: nn.Module, names: list[str], size: int) -> dict[str, int]:
    """Output channels of the named modules, from one forward of a small random image."""
    channels, handles = {}, []
    for name in names:
        def hook(module, args, out, name=name):
            channels[name] = out.shape[1]
        handles.append(backbone.get_submodule(name).register_forward_hook(hook))
    mode = backbone.training
    try:
        with torch.no_grad():
            backbone.eval()
            backbone(torch.zeros(1, 3, size, size))
    finally:
        backbone.train(mode)
        for handle in handles:
            handle.remove()
    return channels


class SEBackboneMixin(SEHostMixin):
    """What an SE backbone adds to its backbone class: the SE sites, their neutral start on
    loading plain weights (:class:`SEHostMixin`), and the SE classes kept through norm
    converters."""

    def se_layers(self) -> Iterator[tuple[str, nn.Module]]:
        """(name, SELayer) of every SE layer, in module order."""
        for site in self.se_sites:
            yield f'{site}.se_layer', self.get_submodule(site).se_layer

    def start_se_neutral(self) -> list[str]:
        """Start every SE layer neutral (see :func:`start_neutral`); one line per layer."""
        return [f'{site}.se_layer: {start_neutral(self.get_submodule(site))}'
                for site in self.se_sites]

    def train(self, mode: bool = True) -> nn.Module:
        """As the backbone's (frozen stages, norm_eval), returning self as nn.Module does."""
        super().train(mode)
        return self

    def forward(self, *args, **kwargs):
        for site in self.se_sites:  # a SyncBN conversion rebuilt the norm: SE back in
            if not isinstance(self.get_submodule(site), SEAfterMixin):
                restore_se_classes(self, self.se_sites)
                break
        return super().forward(*args, **kwargs)


def insert_se(backbone: nn.Module,
              se_ratio: float = 16,
              se_cfg: dict | None = None,
              se_stages: Sequence[bool] | None = None,
              se_after: Sequence[str] | None = None) -> nn.Module:
    """Add SE layers to a built ``backbone`` in place (keys kept) and return it, its class
    now ``SE<class>``. Arguments as :class:`SEBackbone`'s."""
    se_cfg = dict(se_cfg or {})
    for key in ('type', 'ratio', 'in_channels'):
        if key in se_cfg:
            raise ValueError(f'se_cfg may not set {key!r} ({se_cfg[key]!r}): the ratio is '
                             'se_ratio, the channels come from the module')
    se_cfg['ratio'] = se_ratio
    name = type(backbone).__name__
    if isinstance(backbone, SEBackboneMixin):
        raise ValueError(f'{name} already has SE layers')
    if se_after is not None:
        if isinstance(se_after, str) or not se_after:
            raise ValueError(f'se_after must be a non-empty list of module-name patterns, '
                             f'got {se_after!r}')
        sites = [(site, False) for site in match_modules(backbone, se_after)]
    else:
        sites = preset_sites(backbone)
        if not sites:
            raise ValueError(
                f'SEBackbone has no SE placement preset for {name}: give the modules after '
                f'which SE goes as se_after patterns, e.g. se_after=["stages.*.norm"]; '
                f'candidates: {candidate_patterns(backbone)}')
    if se_stages is not None:
        stages = stage_prefixes(backbone)
        if stages is None:
            raise ValueError(f'se_stages={se_stages!r}: {name} has no stages seplugin knows; '
                             'choose the modules with se_after patterns instead')
        if len(se_stages) != len(stages):
            raise ValueError(f'se_stages {tuple(se_stages)} has {len(se_stages)} flags; '
                             f'{name} has {len(stages)} stages')
        sites = [(site, last) for site, last in sites
                 if any(on and any(_in(site, p) for p in prefixes)
                        for on, prefixes in zip(se_stages, stages))]
    channels = {site: output_channels(backbone.get_submodule(site)) for site, _ in sites}
    unknown = [site for site, c in channels.items() if c is None]
    if unknown:
        size = PROBE_SIZES.get(_key(type(backbone)), 64)
        channels.update(_probe_channels(backbone, unknown, size))
    for site, last in sites:
        try:
            add_se_after(backbone.get_submodule(site), channels[site], se_cfg, last)
        except ValueError as error:
            raise ValueError(f'{name}.{site} ({channels[site]} channels): {error}') from error
    if hasattr(backbone, '_freeze_stages'):  # SE in frozen stages is frozen, as SEResNet's
        backbone._freeze_stages()
    return make_se_host(backbone, SEBackboneMixin, tuple(site for site, _ in sites))


class SEBackbone:
    """Any backbone of MMDetection or MMPretrain with Squeeze-and-Excitation, in one line.

    Builds ``backbone`` and puts an SE layer after the modules where the paper puts it for
    that kind of network (see ``BLOCK_PRESETS``, ``BACKBONE_PRESETS`` and
    ``docs/se_anywhere.md``), or after the modules named by ``se_after``. The result is the
    backbone itself, its class ``SE<class>`` and its state-dict keys unchanged: a plain
    checkpoint loads without key edits, SE adds keys only. Loading the plain backbone's
    weights (``init_cfg`` Pretrained, ``load_from``, ``load_checkpoint``) starts the SE
    layers neutral, so the network computes what the plain one computed (exactly where a
    norm, conv or linear layer can take the constant gate, otherwise up to 1 - 4.5e-5).
    A plain ``ResNet`` is built as seplugin's :class:`SEResNet`.

    Args:
        backbone (dict): The backbone's config, built with this scope's registry
            (``type='mmpretrain.X'`` picks another library's).
        se_ratio (float): Reduction ratio r of every SE layer. Defaults to 16.
        se_cfg (dict, optional): Further :class:`SELayer` options (``squeeze``, ``gate``,
            ``bias``, ``squeeze_channels``, ``divisor``, ``min_ratio``).
        se_stages (Sequence[bool], optional): Which stages get SE, one flag per stage.
            Defaults to all.
        se_after (Sequence[str], optional): ``fnmatch`` patterns of module names after which
            SE goes, e.g. ``['stages.*.blocks.*.norm']``, instead of the preset.
        init_cfg (dict | list, optional): Replaces the inner backbone's ``init_cfg``.

    Example:
        >>> model = SEBackbone(backbone=dict(type='mmpretrain.ShuffleNetV2'))
        >>> type(model).__name__, len(list(model.se_layers()))
        ('SEShuffleNetV2', 16)
    """

    registry_scope = 'mmdet'

    def __new__(cls,
                backbone: dict,
                se_ratio: float = 16,
                se_cfg: dict | None = None,
                se_stages: Sequence[bool] | None = None,
                se_after: Sequence[str] | None = None,
                init_cfg: dict | list | None = None) -> nn.Module:
        if not isinstance(backbone, dict) or 'type' not in backbone:
            raise TypeError(f'SEBackbone needs backbone=<a backbone config dict with a type>, '
                            f'got {backbone!r}')
        backbone = copy.deepcopy(dict(backbone))
        if init_cfg is not None:
            backbone['init_cfg'] = init_cfg
        scope = cls.registry_scope if cls.registry_scope in MODEL_REGISTRIES else next(
            s for s in MODEL_REGISTRIES if s != 'seplugin')
        registry = MODEL_REGISTRIES[scope]
        with registry.switch_scope_and_registry(scope) as registry:
            inner = registry.get(backbone['type']) if isinstance(backbone['type'], str) \
                else backbone['type']
            if inner is None:
                raise KeyError(f'SEBackbone: backbone type {backbone["type"]!r} is not in the '
                               f'{scope} registry')
            se_resnet = _se_resnet_for(inner)
            if se_resnet is not None and se_after is None:
                args = {k: v for k, v in backbone.items() if k != 'type'}
                se_args = dict(se_ratio=se_ratio, se_cfg=se_cfg, se_stages=se_stages)
                return se_resnet(**args, **{k: v for k, v in se_args.items()
                                            if v is not None})
            built = registry.build(backbone)
        return insert_se(built, se_ratio, se_cfg, se_stages, se_after)


def _se_resnet_for(cls: type) -> type | None:
    """SEResNet (mmdet's ResNet) or its MMPretrain flavour (MMPretrain's), for exactly
    those classes; None for any other."""
    from mmdet.models.backbones.resnet import ResNet as MMDetResNet

    from seplugin.models.backbones.se_resnet import SEResNet
    if cls is MMDetResNet:
        return SEResNet
    if MMPRETRAIN:
        from mmpretrain.models.backbones.resnet import ResNet as MMPretrainResNet
        if cls is MMPretrainResNet:
            from seplugin.models.backbones.mmpretrain_se_resnet import MMPretrainSEResNet
            return MMPretrainSEResNet
    return None


class MMPretrainSEBackbone(SEBackbone):
    """:class:`SEBackbone` in the mmpretrain scope: the inner backbone comes from
    MMPretrain's registry (``type='SEBackbone'`` there)."""

    registry_scope = 'mmpretrain'


MODELS.register_module('SEBackbone', module=SEBackbone)
if 'mmdet' in MODEL_REGISTRIES:
    MODEL_REGISTRIES['mmdet'].register_module('SEBackbone', module=SEBackbone)
if 'mmpretrain' in MODEL_REGISTRIES:
    MODEL_REGISTRIES['mmpretrain'].register_module('SEBackbone', module=MMPretrainSEBackbone)

