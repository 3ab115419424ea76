"""SE-FPN: MMDetection's FPN with Squeeze-and-Excitation on its lateral and/or output maps.

:class:`SEFPN` is :class:`SENeck` around FPN (``SENeck(neck=dict(type='FPN', ...))`` builds
an SEFPN), with SEFPN's own defaults: lateral SE on, output SE off, no neutral start.
"""
from mmcv.cnn import ConvModule
from mmdet.models.necks import FPN

from seplugin.models.layers.se_after import SEAfterMixin, register_se_after_class
from seplugin.models.layers.se_host import register_se_host_class
from seplugin.models.layers.se_layer import SELayer
from seplugin.models.necks.se_neck import SENeckMixin, insert_se_neck
from seplugin.registry import register_model


class SEConvModule(SEAfterMixin, ConvModule):
    """A ConvModule followed by an SE layer.

    The conv/norm/activation keep ConvModule's state-dict keys, so FPN weights load into
    it unchanged; the SE layer adds ``se_layer.*``. It is also the class SE anywhere gives a
    ConvModule after which SE goes (``seplugin/models/layers/se_after.py``).
    """

    def __init__(self, *args, se_cfg: dict, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.se_layer = SELayer(self.out_channels, **se_cfg)


register_se_after_class(ConvModule, SEConvModule)


@register_model
class SEFPN(SENeckMixin, FPN):
    """FPN with SE on the lateral maps (before the top-down sum) and/or the output maps.

    With both switched off it is exactly mmdet's FPN, and FPN checkpoints load into it with
    or without SE (SE only adds keys). Works wherever an FPN does (Faster/Mask R-CNN,
    RetinaNet, ...). The same module as ``SENeck(neck=dict(type='FPN', ...),
    se_lateral=..., se_outputs=...)``.

    Args:
        se_lateral (bool): SE after each lateral 1x1 conv. Defaults to True.
        se_output (bool): SE on every output level, extra levels included. Defaults to False.
        se_ratio (float): Reduction ratio of the SE layers. Defaults to 16.
        se_cfg (dict, optional): Further :class:`SELayer` options (``squeeze``, ``gate``,
            ``bias``, ``squeeze_channels``).
        neutral_start (bool): Start the SE layers neutral when a plain FPN's weights are
            loaded (see :class:`SENeck`). Defaults to False, as SEFPN always did.
        **kwargs: Every argument of ``mmdet.models.necks.FPN``.

    Example:
        >>> neck = SEFPN([64, 128], out_channels=32, num_outs=3)
        >>> feats = (torch.rand(1, 64, 16, 16), torch.rand(1, 128, 8, 8))
        >>> [tuple(o.shape) for o in neck(feats)]
        [(1, 32, 16, 16), (1, 32, 8, 8), (1, 32, 4, 4)]
    """

    def __init__(self, in_channels: list[int], out_channels: int, num_outs: int,
                 se_lateral: bool = True, se_output: bool = False, se_ratio: float = 16,
                 se_cfg: dict | None = None, neutral_start: bool = False, **kwargs) -> None:
        super().__init__(in_channels, out_channels, num_outs, **kwargs)
        if se_lateral or se_output:
            insert_se_neck(self, se_inputs=False, se_outputs=se_output, se_lateral=se_lateral,
                           se_ratio=se_ratio, se_cfg=se_cfg, neutral_start=neutral_start)
        else:
            self.input_se_layers = self.output_se_layers = None
            self.se_lateral = self.se_output = self.se_input = False


register_se_host_class(SENeckMixin, FPN, SEFPN)
