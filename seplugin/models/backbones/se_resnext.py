"""SE-ResNeXt: MMDetection's ResNeXt with a Squeeze-and-Excitation layer in its blocks."""
from mmdet.models.backbones.resnext import ResNeXt

from seplugin.models.backbones.se_block import SEResNeXtBottleneck
from seplugin.models.backbones.se_resnet import SEResNet
from seplugin.registry import register_model


@register_model
class SEResNeXt(SEResNet, ResNeXt):
    """SE-ResNeXt: grouped-convolution bottlenecks (ResNeXt) with SE, 32x4d by default.

    Everything of :class:`SEResNet` applies; the grouped 3x3 conv comes from mmdet's
    ResNeXt, so widths match mmdet and mmpretrain (128 channels in the first stage at 32x4d).

    Args:
        depth (int): 50, 101 or 152.
        groups (int): Groups of the 3x3 conv (cardinality). Defaults to 32.
        base_width (int): Width of each group in the first stage. Defaults to 4.
        width_per_group (int, optional): MMPretrain's name for ``base_width``.
        **kwargs: Arguments of :class:`SEResNet`.
    """

    arch_settings = {
        50: (SEResNeXtBottleneck, (3, 4, 6, 3)),
        101: (SEResNeXtBottleneck, (3, 4, 23, 3)),
        152: (SEResNeXtBottleneck, (3, 8, 36, 3)),
    }

    def __init__(self, depth: int, groups: int = 32, base_width: int = 4,
                 width_per_group: int | None = None, **kwargs) -> None:
        if width_per_group is not None:
            if 'base_width' in kwargs or (base_width != 4 and base_width != width_per_group):
                raise ValueError(f'base_width {base_width!r} and width_per_group '
                                 f'{width_per_group!r} are the same option; give one')
            base_width = width_per_group
        # SEResNet.__init__ hands these on to mmdet's ResNeXt.__init__ (next in the MRO).
        super().__init__(depth=depth, groups=groups, base_width=base_width, **kwargs)
