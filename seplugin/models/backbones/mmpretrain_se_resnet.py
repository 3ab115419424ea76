"""MMPretrain's ``SEResNet``/``SEResNeXt``, as seplugin's classes: the mmpretrain scope's.

seplugin's :class:`SEResNet` is MMDetection's ResNet with SE. MMPretrain's ResNet differs
in defaults and in a few state-dict keys, so in MMPretrain's registry the names
``SEResNet`` and ``SEResNeXt`` get the subclasses below, which take MMPretrain's defaults
and layout: MMPretrain configs and checkpoints work unchanged (tested over every config
MMPretrain ships). The seplugin and mmdet scopes keep the MMDetection flavour.

Needs MMPretrain: import this module only when it is installed.
"""
import copy

import torch
from mmcv.cnn import ConvModule
from mmpretrain.models.backbones import ResNet as _MMPretrainResNet
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from torch import nn

from seplugin.models.backbones.se_resnet import SEResNet
from seplugin.models.backbones.se_resnext import SEResNeXt

# MMPretrain's ResNet default init_cfg
MMPRETRAIN_INIT_CFG = [
    dict(type='Kaiming', layer=['Conv2d']),
    dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm']),
]
# MMPretrain's SELayer rounds C // ratio with make_divisible(..., 8), min_ratio 0.9
MMPRETRAIN_SE_DIVISOR = 8
# MMPretrain's blocks skip DropPath at rates <= this
_DROP_PATH_EPS = 1.0e-5


def _has_pretrained(init_cfg: dict | list | None) -> bool:
    cfgs = init_cfg if isinstance(init_cfg, list) else [init_cfg]
    return any(cfg and cfg.get('type') == 'Pretrained' for cfg in cfgs)


class MMPretrainFlavour:
    """MMPretrain's ResNet defaults and state-dict layout for seplugin's SE backbones.

    Compared with the MMDetection flavour (:class:`SEResNet`): ``out_indices=(3,)``,
    ``norm_eval=False``,
    ``stem_channels=64`` whatever ``base_channels`` is, MMPretrain's ``init_cfg`` (Kaiming
    convs, unit norms) with its ``zero_init_residual`` rule (applied unless the init_cfg
    loads a ``Pretrained`` checkpoint), SE widths ``make_divisible(C // se_ratio, 8)``,
    a ``deep_stem`` of three ConvModules (keys ``stem.{0,1,2}.conv``/``.bn``), ``avg_down``
    pooling only in strided shortcuts, stochastic-depth rates spread over all blocks of the
    architecture. Every other argument is :class:`SEResNet`'s.
    """

    def __init__(self,
                 depth: int,
                 *,
                 se_ratio: float = 16,
                 se_cfg: dict | None = None,
                 stem_channels: int = 64,
                 out_indices: tuple[int, ...] = (3,),
                 zero_init_residual: bool = True,
                 norm_eval: bool = False,
                 init_cfg: dict | list | None = MMPRETRAIN_INIT_CFG,
                 drop_path_rate: float = 0.0,
                 **kwargs) -> None:
        if 'pretrained' in kwargs:
            raise ValueError(f'{type(self).__name__} in the mmpretrain scope takes no '
                             f'pretrained={kwargs["pretrained"]!r} (an mmdet option); use '
                             "init_cfg=dict(type='Pretrained', checkpoint=...)")
        se_cfg = {'divisor': MMPRETRAIN_SE_DIVISOR, **(se_cfg or {})}
        init_cfg = copy.deepcopy(init_cfg)
        super().__init__(depth, se_ratio=se_ratio, se_cfg=se_cfg, stem_channels=stem_channels,
                         out_indices=out_indices, zero_init_residual=zero_init_residual,
                         norm_eval=norm_eval,
                         init_cfg=init_cfg, **kwargs)
        # mmdet replaces init_cfg=None by its defaults; MMPretrain keeps None (torch's init)
        self.init_cfg = init_cfg
        if zero_init_residual and not _has_pretrained(init_cfg):
            for block in self.blocks():
                block.init_cfg = dict(type='Constant', val=0, override=dict(name='last_norm'))
        # MMPretrain spreads the rates over every block of the depth, built or not
        total = sum(self.arch_settings[depth][1])
        rates = torch.linspace(0, drop_path_rate, total).tolist()
        for block, rate in zip(self.blocks(), rates):
            block.set_drop_path(rate if rate > _DROP_PATH_EPS else 0.0)

    def _make_stem_layer(self, in_channels: int, stem_channels: int) -> None:
        if not self.deep_stem:
            super()._make_stem_layer(in_channels, stem_channels)
            return
        # MMPretrain's deep stem: three conv-norm-ReLU ConvModules (mmdet: a flat Sequential)
        widths = (in_channels, stem_channels // 2, stem_channels // 2, stem_channels)
        self.stem = nn.Sequential(*(
            ConvModule(cin, cout, kernel_size=3, stride=2 if i == 0 else 1, padding=1,
                       conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, inplace=True)
            for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:]))))
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def make_res_layer(self, **kwargs) -> nn.Sequential:
        layer = super().make_res_layer(**kwargs)
        downsample = layer[0].downsample
        if kwargs.get('avg_down') and kwargs.get('stride') == 1 and downsample is not None:
            # mmdet prepends the AvgPool whatever the stride; at stride 1 it is a no-op
            # (kernel 1) that MMPretrain leaves out, so the conv and BN keys are 0 and 1
            layer[0].downsample = nn.Sequential(*list(downsample)[1:])
        return layer

    # MMPretrain's layer-wise learning-rate decay asks the backbone for each layer's depth
    get_layer_depth = _MMPretrainResNet.get_layer_depth


class MMPretrainSEResNet(MMPretrainFlavour, SEResNet):
    """SE-ResNet with MMPretrain's ResNet defaults and layout: ``type='SEResNet'`` in the
    mmpretrain scope. Takes MMPretrain's ``SEResNet``/``ResNet`` arguments and seplugin's
    SE options; see :class:`MMPretrainFlavour` and :class:`SEResNet`.

    Example:
        >>> model = MMPretrainSEResNet(depth=50)
        >>> [tuple(f.shape) for f in model(torch.rand(1, 3, 64, 64))]
        [(1, 2048, 2, 2)]
    """


class MMPretrainSEResNeXt(MMPretrainFlavour, SEResNeXt):
    """SE-ResNeXt with MMPretrain's ResNet defaults and layout: ``type='SEResNeXt'`` in the
    mmpretrain scope (``groups=32``, ``width_per_group=4`` by default)."""


# force: MMPretrain registers its own classes under these names
MMPRETRAIN_MODELS.register_module('SEResNet', module=MMPretrainSEResNet, force=True)
MMPRETRAIN_MODELS.register_module('SEResNeXt', module=MMPretrainSEResNeXt, force=True)
