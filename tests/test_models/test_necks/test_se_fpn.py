import pytest
import torch
from mmdet.models.necks import FPN

from seplugin.models import SEFPN

IN = [16, 32, 64]


def feats():
    return tuple(torch.randn(2, c, 32 // 2 ** i, 32 // 2 ** i) for i, c in enumerate(IN))


@pytest.mark.parametrize('extra', [dict(), dict(add_extra_convs='on_input'),
                                   dict(add_extra_convs='on_output', start_level=1),
                                   dict(norm_cfg=dict(type='BN'), no_norm_on_lateral=True)])
def test_se_off_is_exactly_fpn(extra):
    num_outs = 4 if extra.get('start_level') else 5
    fpn = FPN(IN, 8, num_outs, **extra)
    fpn.init_weights()
    sefpn = SEFPN(IN, 8, num_outs, se_lateral=False, se_output=False, **extra)
    sefpn.load_state_dict(fpn.state_dict(), strict=True)
    assert set(sefpn.state_dict()) == set(fpn.state_dict())
    fpn.eval(), sefpn.eval()
    x = feats()
    for a, b in zip(fpn(x), sefpn(x)):
        torch.testing.assert_close(a, b)


def test_fpn_weights_load_into_se_fpn():
    fpn = FPN(IN, 8, 5)
    sefpn = SEFPN(IN, 8, 5, se_lateral=True, se_output=True, se_ratio=4)
    missing, unexpected = sefpn.load_state_dict(fpn.state_dict(), strict=False)
    assert not unexpected
    assert missing and all('se_layer' in k for k in missing)
    torch.testing.assert_close(sefpn.lateral_convs[1].conv.weight,
                               fpn.lateral_convs[1].conv.weight)


def test_lateral_se_applies_before_top_down_sum():
    sefpn = SEFPN(IN, 8, 3, se_ratio=4).eval()
    x = feats()
    # recompute the lateral maps by hand: conv -> SE, then the top-down sum and 3x3 conv
    lat = [m.se_layer(m.conv(xi)) for m, xi in zip(sefpn.lateral_convs, x)]
    for i in (2, 1):
        up = torch.nn.functional.interpolate(lat[i], size=lat[i - 1].shape[2:])
        lat[i - 1] = lat[i - 1] + up
    expected = [conv(li) for conv, li in zip(sefpn.fpn_convs, lat)]
    for a, b in zip(sefpn(x), expected):
        torch.testing.assert_close(a, b)


def test_output_se_on_every_level():
    sefpn = SEFPN(IN, 8, 5, se_lateral=False, se_output=True, se_ratio=4,
                  add_extra_convs='on_input').eval()
    plain = SEFPN(IN, 8, 5, se_lateral=False, add_extra_convs='on_input').eval()
    plain.load_state_dict(sefpn.state_dict(), strict=False)
    x = feats()
    outs, plain_outs = sefpn(x), plain(x)
    assert len(outs) == 5 == len(sefpn.output_se_layers)
    for se, a, b in zip(sefpn.output_se_layers, outs, plain_outs):
        torch.testing.assert_close(a, se(b))


def test_se_options_reach_the_layers():
    sefpn = SEFPN(IN, 32, 3, se_ratio=8, se_cfg=dict(squeeze='max', gate='hsigmoid'))
    se = sefpn.lateral_convs[0].se_layer
    assert (se.squeeze_channels, se.squeeze, se.gate_type) == (4, 'max', 'hsigmoid')
    with pytest.raises(ValueError, match=r"unknown SE gate 'soft'"):
        SEFPN(IN, 32, 3, se_cfg=dict(gate='soft'))


def test_registered_in_mmdet():
    from mmdet.registry import MODELS
    neck = MODELS.build(dict(type='SEFPN', in_channels=IN, out_channels=8, num_outs=3,
                             se_ratio=4))
    assert isinstance(neck, SEFPN)
