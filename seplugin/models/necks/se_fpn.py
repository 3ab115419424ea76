"""SE-FPN: MMDetection's FPN with Squeeze-and-Excitation on its lateral and/or output maps."""
import torch
from mmcv.cnn import ConvModule
from mmdet.models.necks import FPN
from torch import nn

from seplugin.models.layers.se_layer import SELayer
from seplugin.registry import register_model


class SEConvModule(ConvModule):
    """A ConvModule followed by an SE layer.

    The conv/norm/activation keep ConvModule's state-dict keys, so FPN weights load into
    it unchanged; the SE layer adds ``se_layer.*``.
    """

    def __init__(self, *args, se_cfg: dict, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.se_layer = SELayer(self.out_channels, **se_cfg)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return self.se_layer(super().forward(x, *args, **kwargs))


@register_model
class SEFPN(FPN):
    """FPN with SE on the lateral maps (before the top-down sum) and/or the output maps.

    With both switched off it is exactly mmdet's FPN, and FPN checkpoints load into it with
    or without SE (SE only adds keys). Works wherever an FPN does (Faster/Mask R-CNN,
    RetinaNet, ...).

    Args:
        se_lateral (bool): SE after each lateral 1x1 conv. Defaults to True.
        se_output (bool): SE on every output level, extra levels included. Defaults to False.
        se_ratio (float): Reduction ratio of the SE layers. Defaults to 16.
        se_cfg (dict, optional): Further :class:`SELayer` options (``squeeze``, ``gate``,
            ``bias``, ``squeeze_channels``).
        **kwargs: Every argument of ``mmdet.models.necks.FPN``.

    Example:
        >>> neck = SEFPN([64, 128], out_channels=32, num_outs=3)
        >>> feats = (torch.rand(1, 64, 16, 16), torch.rand(1, 128, 8, 8))
        >>> [tuple(o.shape) for o in neck(feats)]
        [(1, 32, 16, 16), (1, 32, 8, 8), (1, 32, 4, 4)]
    """

    def __init__(self, in_channels: list[int], out_channels: int, num_outs: int,
                 se_lateral: bool = True, se_output: bool = False, se_ratio: float = 16,
                 se_cfg: dict | None = None, conv_cfg: dict | None = None,
                 norm_cfg: dict | None = None, act_cfg: dict | None = None,
                 no_norm_on_lateral: bool = False, **kwargs) -> None:
        super().__init__(in_channels, out_channels, num_outs, conv_cfg=conv_cfg,
                         norm_cfg=norm_cfg, act_cfg=act_cfg,
                         no_norm_on_lateral=no_norm_on_lateral, **kwargs)
        se_cfg = dict(ratio=se_ratio, **(se_cfg or {}))
        self.se_lateral = se_lateral
        self.se_output = se_output
        if se_lateral:
            # Rebuilt exactly as FPN builds them, plus SE at the end.
            self.lateral_convs = nn.ModuleList(
                SEConvModule(in_channels[i], out_channels, 1, se_cfg=se_cfg,
                             conv_cfg=conv_cfg,
                             norm_cfg=None if no_norm_on_lateral else norm_cfg,
                             act_cfg=act_cfg, inplace=False)
                for i in range(self.start_level, self.backbone_end_level))
        if se_output:
            self.output_se_layers = nn.ModuleList(
                SELayer(out_channels, **se_cfg) for _ in range(num_outs))

    def forward(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        outs = super().forward(inputs)
        if self.se_output:
            outs = tuple(se(out) for se, out in zip(self.output_se_layers, outs))
        return outs

