"""The Squeeze-and-Excitation layer: the one SE module every seplugin model uses."""
import math

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import nn

from seplugin.registry import register_model

SQUEEZES = ('avg', 'max')
# The paper's Table 12 compares sigmoid, tanh and ReLU gates; hsigmoid is the cheap
# piecewise-linear sigmoid of MobileNetV3 (relu6(x + 3) / 6).
GATES = {'sigmoid': 'Sigmoid', 'tanh': 'Tanh', 'relu': 'ReLU', 'hsigmoid': nn.Hardsigmoid}
# Gate bias for a constant start (zero last-FC weights). 'steep': where the gate learns
# fastest and is not 0, for placements where the model can divide the constant out.
# 'one': the gate's value closest to 1, where it cannot (sigmoid(10) = 1 - 4.5e-5).
CONSTANT_GATE_BIAS = {
    'steep': {'sigmoid': 0.0, 'tanh': math.atanh(0.5), 'relu': 1.0, 'hsigmoid': 0.0},
    'one': {'sigmoid': 10.0, 'tanh': 10.0, 'relu': 1.0, 'hsigmoid': 3.0},
}


def squeeze_width(channels: int, ratio: float, divisor: int = 1,
                  min_ratio: float = 0.9) -> int:
    """Width of the excitation bottleneck: ``floor(channels / ratio)``, the paper's C/r,
    rounded to a multiple of ``divisor``.

    The rounding is MMPretrain's ``make_divisible(channels // ratio, divisor, min_ratio)``:
    the nearest multiple of ``divisor``, at least ``divisor``, raised by one ``divisor`` when
    rounding lost more than ``1 - min_ratio`` of the width. With ``divisor=1`` (default,
    also mmdet's rule) it is the plain floor. The published SE-ResNets need:

    - MMPretrain's ``SEResNet``/``SEResNeXt``: ``divisor=8`` (``min_ratio=0.9``);
    - timm's ``seresnet*``/``seresnext*``: ``divisor=8, min_ratio=0`` (timm's
      ``make_divisible(channels / ratio, 8, round_limit=0)``);
    - Cadene's SENets and the paper: the default floor.

    All agree on every SE-ResNet-50/101/152 and SE-ResNeXt width at r=16 (16 to 128); on
    the narrow stages of SE-ResNet-18/34 (64 channels at r=16) the floor gives 4, the
    rounded rules 8.
    """
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not ratio > 0:
        raise ValueError(f'SE ratio must be a number > 0, got {ratio!r}')
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 1:
        raise ValueError(f'SE divisor must be an int >= 1, got {divisor!r}')
    if isinstance(min_ratio, bool) or not isinstance(min_ratio, (int, float)) \
            or not 0 <= min_ratio <= 1:
        raise ValueError(f'SE min_ratio must be a number in [0, 1], got {min_ratio!r}')
    width = int(channels / ratio)
    if width < 1:
        raise ValueError(
            f'SE ratio {ratio} leaves {channels / ratio:.3g} < 1 squeeze channel for '
            f'{channels} channels; use a ratio <= {channels}')
    rounded = max(divisor, int(width + divisor / 2) // divisor * divisor)
    if rounded < min_ratio * width:
        rounded += divisor
    return rounded


def _fc(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A 1x1 conv applied to (N, C) features."""
    return F.linear(x, conv.weight.flatten(1), conv.bias)


class SELayer(BaseModule):
    """Squeeze-and-Excitation: rescale each channel by a gate computed from the whole map.

    squeeze (global pooling) -> 1x1 conv C->C/r -> ReLU -> 1x1 conv C/r->C -> gate,
    then ``x * gate``. The two 1x1 convs are ConvModules named ``conv1``/``conv2``, so the
    state-dict keys are those of mmpretrain's SE layer and its checkpoints load unchanged.

    Args:
        in_channels (int): Channels of the input (and output). Named as mmdet plugins
            expect, so ``dict(type='SELayer')`` works in mmdet's ``plugins``.
        ratio (float): Reduction ratio r. Defaults to 16.
        squeeze_channels (int, optional): Explicit bottleneck width; overrides ``ratio``.
        divisor (int): Round the width ``C // ratio`` to a multiple of this (MMPretrain
            and timm use 8). Defaults to 1: the paper's floor. See :func:`squeeze_width`.
        min_ratio (float): With ``divisor``, the least share of ``C // ratio`` that the
            rounding may keep (0.9 as in MMPretrain; timm's rule is 0). Defaults to 0.9.
        squeeze (str): Global pooling, ``'avg'`` (paper default) or ``'max'``.
        gate (str): Excitation gate, one of ``'sigmoid'`` (default), ``'tanh'``,
            ``'relu'``, ``'hsigmoid'``.
        bias (bool): Whether the two FC (1x1 conv) layers have a bias. Defaults to True,
            as in the paper, mmpretrain and timm.
        init_cfg (dict, optional): mmengine initialisation config.

    Example:
        >>> se = SELayer(64, ratio=16)
        >>> se(torch.rand(2, 64, 8, 8)).shape
        torch.Size([2, 64, 8, 8])
    """

    _abbr_ = 'se_layer'  # the module name mmdet's plugin builder gives it

    def __init__(self,
                 in_channels: int,
                 ratio: float = 16,
                 squeeze_channels: int | None = None,
                 divisor: int = 1,
                 min_ratio: float = 0.9,
                 squeeze: str = 'avg',
                 gate: str = 'sigmoid',
                 bias: bool = True,
                 init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg)
        if squeeze not in SQUEEZES:
            raise ValueError(f'unknown SE squeeze {squeeze!r}; expected one of {SQUEEZES}')
        if gate not in GATES:
            raise ValueError(f'unknown SE gate {gate!r}; expected one of {tuple(GATES)}')
        if not isinstance(bias, bool):
            raise TypeError(f'SE bias must be True or False, got {bias!r}')
        if squeeze_channels is None:
            squeeze_channels = squeeze_width(in_channels, ratio, divisor, min_ratio)
        elif isinstance(squeeze_channels, bool) or not isinstance(squeeze_channels, int) \
                or squeeze_channels < 1:
            raise ValueError(
                f'SE squeeze_channels must be a positive int, got {squeeze_channels!r}')
        self.in_channels = in_channels
        self.squeeze_channels = squeeze_channels
        self.squeeze = squeeze
        self.gate_type = gate
        # ReLU not in place (it saves nothing on a 1x1 map): full backward hooks on conv1
        # or its conv hand it a view that may not be modified in place
        self.conv1 = ConvModule(in_channels, squeeze_channels, 1, bias=bias,
                                act_cfg=dict(type='ReLU'), inplace=False)
        self.conv2 = ConvModule(squeeze_channels, in_channels, 1, bias=bias,
                                act_cfg=dict(type=GATES[gate]))

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Per-channel excitation of ``x``, shape (N, C, 1, 1): the squeeze, then the two
        ConvModules called as modules (their hooks fire, wrappers that replace them run).

        The squeeze is ``mean``, which accumulates half-precision maps in float32: a
        ``sum`` of an fp16 map above 65,504 elements of size ~1 overflows.
        """
        pooled = x.mean((2, 3), keepdim=True) if self.squeeze == 'avg' \
            else x.amax((2, 3), keepdim=True)
        return self.conv2(self.conv1(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)

    def lean_gate(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`gate` as the lean SE tail of a residual block computes it, for use only
        where nobody can tell (see ``SEBlockMixin.why_not_lean_tail``).

        The 1x1 convs see a 1x1 map, so they run as the matrix products they are
        (``F.linear`` on their own weights): the same numbers up to float rounding, while
        conv2d's overhead on such inputs made it a large share of SE's training time on
        the CPU. The average is a sum accumulated in at least float32 divided by H*W:
        ``mean``'s numbers, and its backward is a broadcast view where ``mean``'s writes
        a full map.
        """
        if self.squeeze == 'avg':
            accumulate = torch.promote_types(x.dtype, torch.float32)
            pooled = (x.sum((2, 3), dtype=accumulate) / (x.shape[2] * x.shape[3])).to(x.dtype)
        else:
            pooled = x.amax((2, 3))
        return self.gate_from_squeeze(pooled)[:, :, None, None]

    def gate_from_squeeze(self, pooled: torch.Tensor) -> torch.Tensor:
        """The excitation of squeezed features ``pooled`` (N, C): the two FCs and the
        gate, as the fast SE tails compute them (shape (N, C))."""
        hidden = self.conv1.activate(_fc(self.conv1.conv, pooled))
        return self.conv2.activate(_fc(self.conv2.conv, hidden))

    def fc_parameters(self) -> list[torch.Tensor | None]:
        """The two FCs' weights and biases (None without bias), in a fixed order."""
        return [self.conv1.conv.weight, self.conv1.conv.bias, self.conv2.conv.weight,
                self.conv2.conv.bias]

    @torch.no_grad()
    def start_constant(self, where: str = 'steep') -> float:
        """Make the gate input-independent: zero last-FC weights and a fixed bias.

        The gradient to those weights stays non-zero (it is the gate's slope times the
        first FC's output), so the layer learns from the first step. Returns the constant
        gate value. ``where`` is a key of ``CONSTANT_GATE_BIAS``.
        """
        if self.conv2.conv.bias is None:
            raise ValueError('a constant SE start needs the biased FC layers (bias=True)')
        bias = CONSTANT_GATE_BIAS[where][self.gate_type]
        self.conv2.conv.weight.zero_()
        self.conv2.conv.bias.fill_(bias)
        return self.conv2.activate(torch.tensor(bias)).item()

    def extra_repr(self) -> str:
        return f'squeeze={self.squeeze!r}, gate={self.gate_type!r}'


register_model(SELayer)
