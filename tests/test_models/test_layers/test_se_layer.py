import pytest
import torch
import torch.nn.functional as F

from seplugin.models import SELayer, squeeze_width


def reference_se(se: SELayer, x: torch.Tensor, pool, gate) -> torch.Tensor:
    """The paper's formula written with functional ops: x * gate(W2 relu(W1 pool(x)))."""
    w1, b1 = se.conv1.conv.weight, se.conv1.conv.bias
    w2, b2 = se.conv2.conv.weight, se.conv2.conv.bias
    z = pool(x).flatten(1)
    s = F.relu(F.linear(z, w1.flatten(1), b1))
    return x * gate(F.linear(s, w2.flatten(1), b2))[:, :, None, None]


@pytest.mark.parametrize('gate,fn', [('sigmoid', torch.sigmoid), ('tanh', torch.tanh),
                                     ('relu', F.relu), ('hsigmoid', F.hardsigmoid)])
@pytest.mark.parametrize('squeeze,pool', [('avg', lambda x: x.mean((2, 3))),
                                          ('max', lambda x: x.amax((2, 3)))])
def test_matches_formula(gate, fn, squeeze, pool):
    se = SELayer(32, ratio=4, squeeze=squeeze, gate=gate)
    for p in se.parameters():
        torch.nn.init.normal_(p)
    x = torch.randn(3, 32, 5, 7)
    torch.testing.assert_close(se(x), reference_se(se, x, pool, fn))


def test_gate_shape_and_range():
    se = SELayer(64)
    g = se.gate(torch.randn(2, 64, 4, 4))
    assert g.shape == (2, 64, 1, 1)
    assert ((g > 0) & (g < 1)).all()


def test_widths_and_bias():
    se = SELayer(256, ratio=16)
    assert se.conv1.conv.weight.shape == (16, 256, 1, 1)
    assert se.conv2.conv.weight.shape == (256, 16, 1, 1)
    assert sum(p.numel() for p in se.parameters()) == 2 * 256 * 16 + 16 + 256
    nobias = SELayer(256, ratio=16, bias=False)
    assert nobias.conv1.conv.bias is None and nobias.conv2.conv.bias is None
    assert SELayer(256, squeeze_channels=7).squeeze_channels == 7


def test_squeeze_width_is_floor_of_c_over_r():
    assert squeeze_width(256, 16) == 16
    assert squeeze_width(100, 16) == 6
    assert squeeze_width(64, 2.5) == 25
    assert squeeze_width(16, 16) == 1


@pytest.mark.parametrize('ratio', [2, 4, 8, 16, 32, 2.5, 1 / 0.0625])
def test_squeeze_width_rounds_as_mmpretrain_and_timm(ratio):
    """divisor=8 is MMPretrain's SELayer rule; adding min_ratio=0 is timm's SEModule rule."""
    from mmpretrain.models.utils import make_divisible as mmpretrain_make_divisible
    from timm.layers import make_divisible as timm_make_divisible
    for channels in range(8, 2049, 8):
        if channels / ratio < 1:
            continue
        assert squeeze_width(channels, ratio, divisor=8) == \
            mmpretrain_make_divisible(channels // ratio, 8), (channels, ratio)
        assert squeeze_width(channels, ratio, divisor=8, min_ratio=0) == \
            timm_make_divisible(channels / ratio, 8, round_limit=0.0), (channels, ratio)


def test_se_layer_widths_of_timm_seresnet18():
    """timm's seresnet18 squeezes its four stages (64..512 channels) to 8, 8, 16, 32."""
    widths = [SELayer(c, divisor=8, min_ratio=0).squeeze_channels for c in (64, 128, 256, 512)]
    assert widths == [8, 8, 16, 32]
    assert [SELayer(c).squeeze_channels for c in (64, 128, 256, 512)] == [4, 8, 16, 32]


@pytest.mark.parametrize('kwargs, message', [
    (dict(divisor=0), r'divisor must be an int >= 1, got 0'),
    (dict(divisor=8.0), r'divisor must be an int >= 1, got 8.0'),
    (dict(min_ratio=1.5), r'min_ratio must be a number in \[0, 1\], got 1.5'),
])
def test_bad_rounding_options_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SELayer(64, **kwargs)


@pytest.mark.parametrize('ratio', [0, -2, 'x', None, True])
def test_bad_ratio(ratio):
    with pytest.raises(ValueError, match=rf"ratio must be a number > 0, got {ratio!r}"):
        SELayer(64, ratio=ratio)


def test_ratio_leaving_no_channel():
    with pytest.raises(ValueError, match=r'ratio 32 leaves 0.5 < 1 squeeze channel for 16 '
                                         r'channels; use a ratio <= 16'):
        SELayer(16, ratio=32)


def test_bad_options():
    with pytest.raises(ValueError, match=r"unknown SE squeeze 'median'.*\('avg', 'max'\)"):
        SELayer(64, squeeze='median')
    with pytest.raises(ValueError, match=r"unknown SE gate 'softmax'.*'sigmoid', 'tanh', "
                                         r"'relu', 'hsigmoid'"):
        SELayer(64, gate='softmax')
    with pytest.raises(ValueError, match=r'squeeze_channels must be a positive int, got 0'):
        SELayer(64, squeeze_channels=0)
    with pytest.raises(TypeError, match=r"bias must be True or False, got 'yes'"):
        SELayer(64, bias='yes')


def test_as_mmdet_plugin_gives_mmpretrain_keys():
    """An SELayer plugin at after_conv3 of mmdet's ResNet has mmpretrain's SE-ResNet keys."""
    from mmdet.models.backbones import ResNet
    from mmengine.registry import DefaultScope
    from mmpretrain.models.backbones import SEResNet as MMPretrainSEResNet
    with DefaultScope.overwrite_default_scope('mmdet'):
        mmdet_se = ResNet(50, plugins=[dict(cfg=dict(type='SELayer'), position='after_conv3')])
    ref = MMPretrainSEResNet(50)
    assert set(mmdet_se.state_dict()) == set(ref.state_dict())
