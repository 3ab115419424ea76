"""SE-ResNet: MMDetection's ResNet with a Squeeze-and-Excitation layer in its blocks."""
from collections.abc import Iterator, Mapping, Sequence

import torch
from mmdet.models.backbones.resnet import ResNet
from mmengine.logging import print_log
from torch import nn

from seplugin.models.backbones.se_block import (
    SE_POSITIONS,
    SEBasicBlock,
    SEBlockMixin,
    SEBottleneck,
)
from seplugin.registry import register_model

STEM_POOLS = {
    'pad': lambda: nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    'ceil': lambda: nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
}


@register_model
class SEResNet(ResNet):
    """SE-ResNet (Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018).

    The ResNet of MMDetection, every option included (``out_indices``, ``frozen_stages``,
    ``norm_eval``, ``norm_cfg``, ``with_cp``, ``dcn``/``stage_with_dcn``, ``plugins``,
    ``style``, ``deep_stem``, ``avg_down``, ``strides``, ``dilations``,
    ``zero_init_residual``, ``init_cfg``), plus one SE layer per residual block. It also takes
    MMPretrain's ``SEResNet`` arguments (``se_ratio``, ``drop_path_rate``, ``expansion``) and
    loads its checkpoints unchanged. The defaults give the paper's SE-ResNet.

    Loading a state dict that holds a block's trunk but not its SE layer (a plain ResNet's,
    by any loader: ``init_cfg`` Pretrained at any level, ``load_from``,
    ``load_state_dict``) starts that SE layer neutral and logs it, so the network computes
    what the plain one computed (:meth:`SEBlockMixin.start_se_neutral`).

    Args:
        depth (int): 18, 34 (BasicBlock), 50, 101 or 152 (Bottleneck).
        se_ratio (float): Reduction ratio r of every SE layer. Defaults to 16.
        se_cfg (dict, optional): Further :class:`SELayer` options: ``squeeze``, ``gate``,
            ``bias``, ``squeeze_channels``.
        se_position (str): Where SE sits in each block, one of ``SE_POSITIONS``:
            ``'standard'`` (default), ``'pre'``, ``'post'``, ``'identity'``, ``'3x3'``.
        se_stages (Sequence[bool], optional): Which stages get SE (the paper's stage
            ablation); one flag per stage. Defaults to all.
        drop_path_rate (float): Stochastic depth, rising linearly from 0 at the first block
            to this value at the last, as in MMPretrain. Defaults to 0.
        expansion (int, optional): Accepted for MMPretrain configs; must equal the block's.
        stem_pool (str): The stem's 3x3/2 max pooling: ``'pad'`` (padding 1, as in
            torchvision, mmdet and mmpretrain; default) or ``'ceil'`` (no padding, ceil
            mode, as in Caffe's SENet and Cadene's/timm's legacy ports, whose weights
            need it to give their outputs).
        norm_eval (bool): Keep BN in eval mode while training. Defaults to True, as
            mmdet's ResNet (MMPretrain's default, False, is the mmpretrain scope's).
        **kwargs: Every other argument of ``mmdet.models.backbones.ResNet``.

    Example:
        >>> model = SEResNet(depth=50, out_indices=(0, 1, 2, 3))
        >>> [tuple(f.shape) for f in model(torch.rand(1, 3, 64, 64))]
        [(1, 256, 16, 16), (1, 512, 8, 8), (1, 1024, 4, 4), (1, 2048, 2, 2)]
    """

    arch_settings = {
        18: (SEBasicBlock, (2, 2, 2, 2)),
        34: (SEBasicBlock, (3, 4, 6, 3)),
        50: (SEBottleneck, (3, 4, 6, 3)),
        101: (SEBottleneck, (3, 4, 23, 3)),
        152: (SEBottleneck, (3, 8, 36, 3)),
    }

    def __init__(self,
                 depth: int,
                 se_ratio: float = 16,
                 se_cfg: dict | None = None,
                 se_position: str = 'standard',
                 se_stages: Sequence[bool] | None = None,
                 drop_path_rate: float = 0.0,
                 expansion: int | None = None,
                 stem_pool: str = 'pad',
                 norm_eval: bool = True,
                 num_stages: int = 4,
                 plugins: list[dict] | None = None,
                 init_cfg: dict | list | None = None,
                 pretrained: str | None = None,
                 **kwargs) -> None:
        if depth not in self.arch_settings:
            raise ValueError(f'invalid depth {depth!r} for {type(self).__name__}; '
                             f'expected one of {sorted(self.arch_settings)}')
        block = self.arch_settings[depth][0]
        if expansion is not None and expansion != block.expansion:
            raise ValueError(f'expansion {expansion!r} does not match depth {depth}, whose '
                             f'{block.__bases__[-1].__name__} has expansion {block.expansion}')
        if se_position not in SE_POSITIONS:
            raise ValueError(f'unknown SE position {se_position!r}; '
                             f'expected one of {SE_POSITIONS}')
        if stem_pool not in STEM_POOLS:
            raise ValueError(f'unknown stem_pool {stem_pool!r}; expected one of '
                             f'{tuple(STEM_POOLS)}')
        se_stages = (True,) * num_stages if se_stages is None else tuple(se_stages)
        if len(se_stages) != num_stages:
            raise ValueError(f'se_stages {se_stages} has {len(se_stages)} flags; expected one '
                             f'per stage ({num_stages})')
        se_cfg = dict(se_cfg or {})
        for key in ('type', 'ratio', 'in_channels'):
            if key in se_cfg:
                raise ValueError(f'se_cfg may not set {key!r} ({se_cfg[key]!r}): the ratio is '
                                 'se_ratio, the channels come from the block')
        se_plugin = dict(cfg=dict(type='SELayer', ratio=se_ratio, **se_cfg),
                         position=se_position, stages=se_stages)
        super().__init__(depth=depth, num_stages=num_stages, norm_eval=norm_eval,
                         plugins=[se_plugin, *(plugins or [])], init_cfg=init_cfg,
                         pretrained=pretrained, **kwargs)
        self.se_position = se_position
        self.se_stages = se_stages
        self.maxpool = STEM_POOLS[stem_pool]()
        # mmdet zero-initialises the last BN only for its own block classes (an `is` test),
        # so the SE blocks get the same init_cfg here.
        if self.zero_init_residual and init_cfg is None and pretrained is None:
            for block in self.blocks():
                block.init_cfg = dict(type='Constant', val=0, override=dict(name='last_norm'))
        blocks = list(self.blocks())
        # float32 linspace, exactly as mmpretrain computes the rates
        for block, rate in zip(blocks, torch.linspace(0, drop_path_rate, len(blocks)).tolist()):
            block.set_drop_path(rate)
        self.register_load_state_dict_post_hook(_start_missing_se_neutral)

    def train(self, mode: bool = True) -> 'SEResNet':
        """As mmdet's (frozen stages and norm_eval kept), but returns self like nn.Module."""
        super().train(mode)
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Runs before the children load: note the blocks whose trunk is in this state dict
        # but whose SE layer is not (a plain ResNet's weights, at any nesting level and
        # through any loader), for _start_missing_se_neutral after they have loaded.
        self._se_layers_to_start = [
            name for name, block in self.named_blocks()
            if block.se_position is not None and _has_trunk_not_se(block, state_dict,
                                                                    f'{prefix}{name}.')]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def named_blocks(self) -> Iterator[tuple[str, SEBlockMixin]]:
        """('layerX.Y', block) of all residual blocks, stage by stage."""
        for name in self.res_layers:
            for i, block in enumerate(getattr(self, name)):
                yield f'{name}.{i}', block

    def blocks(self) -> Iterator[SEBlockMixin]:
        """All residual blocks, stage by stage."""
        for _, block in self.named_blocks():
            yield block

    def se_layers(self) -> Iterator[tuple[str, nn.Module]]:
        """(name, SELayer) of every block that has one, in forward order."""
        for name, block in self.named_blocks():
            if block.se_position is not None:
                yield f'{name}.se_layer', block.se_layer


def _has_trunk_not_se(block: SEBlockMixin, state_dict: Mapping, prefix: str) -> bool:
    """Whether ``state_dict`` holds every trunk parameter of ``block`` and none of its SE
    layer's (keys under ``prefix``). mmdet plugins other than SE do not count as trunk."""
    other = {'se_layer', *getattr(block, 'after_conv1_plugin_names', ()),
             *getattr(block, 'after_conv2_plugin_names', ()),
             *getattr(block, 'after_conv3_plugin_names', ())}
    trunk = [name for name, _ in block.named_parameters()
             if name.split('.', 1)[0] not in other]
    se_prefix = f'{prefix}se_layer.'
    return (all(f'{prefix}{name}' in state_dict for name in trunk)
            and not any(key.startswith(se_prefix) for key in state_dict))


def _start_missing_se_neutral(backbone: SEResNet, incompatible_keys) -> None:
    """Load post-hook: start neutral the SE layers that the state dict just loaded lacked
    while it held their blocks' trunk, and log them. Loading SE weights never gets here."""
    names = backbone.__dict__.pop('_se_layers_to_start', None)
    if not names:
        return
    blocks = dict(backbone.named_blocks())
    lines = '\n'.join(f'  {name}.se_layer: {blocks[name].start_se_neutral()}' for name in names)
    print_log(f'{type(backbone).__name__}: {len(names)} SE layers are not in the loaded '
              'state dict, whose blocks are; they start neutral (each block computes what '
              f'the plain block computed):\n{lines}', logger='current')
