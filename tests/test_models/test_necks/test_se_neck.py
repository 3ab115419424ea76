"""SENeck against mmdet's necks themselves: keys kept, plain outputs after the neutral
start, SE where it is said to be; SEFPN is SENeck around FPN."""
import copy

import pytest
import torch
from mmdet.models.necks import FPN
from mmdet.registry import MODELS
from toy import randomise_norms

from seplugin.models import SEFPN, SENeck

IN = [16, 32, 64]
# (neck cfg, input channels): every mmdet neck that maps a tuple of maps to a tuple
NECKS = [
    (dict(type='FPN', in_channels=IN, out_channels=16, num_outs=5), IN),
    (dict(type='FPN', in_channels=IN, out_channels=16, num_outs=5, add_extra_convs='on_output',
          norm_cfg=dict(type='BN')), IN),
    (dict(type='PAFPN', in_channels=IN, out_channels=16, num_outs=5), IN),
    (dict(type='FPN_CARAFE', in_channels=IN, out_channels=16, num_outs=5,
          upsample_cfg=dict(type='nearest')), IN),
    (dict(type='BFP', in_channels=16, num_levels=3, refine_type='non_local'), [16] * 3),
    (dict(type='NASFPN', in_channels=IN, out_channels=16, num_outs=5, stack_times=1), IN),
    (dict(type='NASFCOS_FPN', in_channels=[8, *IN], out_channels=16, num_outs=5,
          start_level=1, add_extra_convs=True), [8, *IN]),
    (dict(type='HRFPN', in_channels=IN, out_channels=16, num_outs=4), IN),
    (dict(type='ChannelMapper', in_channels=IN, out_channels=16, num_outs=4), IN),
    # lists its input channels deepest first, and takes the maps shallowest first
    (dict(type='YOLOV3Neck', num_scales=3, in_channels=IN[::-1], out_channels=[32, 16, 8]),
     IN),
    (dict(type='YOLOXPAFPN', in_channels=IN, out_channels=16, num_csp_blocks=1), IN),
    (dict(type='CSPNeXtPAFPN', in_channels=IN, out_channels=16, num_csp_blocks=1), IN),
    (dict(type='SSDNeck', in_channels=(16, 32), out_channels=(16, 32, 32, 16),
          level_strides=(2, 2), level_paddings=(1, 1), l2_norm_scale=None), [16, 32]),
]
IDS = [f'{cfg["type"]}-{i}' for i, (cfg, _) in enumerate(NECKS)]


def feats(channels: list[int], dtype=torch.float32):
    sizes = [32 >> i for i in range(len(channels))]
    return tuple(torch.randn(2, c, s, s, dtype=dtype) for c, s in zip(channels, sizes))


@pytest.mark.parametrize('cfg,channels', NECKS, ids=IDS)
def test_plain_neck_weights_load_and_start_neutral(cfg, channels):
    plain = MODELS.build(copy.deepcopy(cfg))
    randomise_norms(plain, shift=0.6, scale=(0.5, 2))
    lateral = hasattr(plain, 'lateral_convs')
    se = MODELS.build(dict(type='SENeck', neck=copy.deepcopy(cfg), se_inputs=True,
                           se_outputs=True, se_lateral=lateral, se_ratio=4))
    x = feats(channels, torch.float64)
    n_out = len(plain.double().eval()(x))
    assert len(se.input_se_layers) == len(x) and len(se.output_se_layers) == n_out
    plain_keys, se_keys = set(plain.state_dict()), set(se.state_dict())
    assert plain_keys <= se_keys and all('se_' in k for k in se_keys - plain_keys)
    missing, unexpected = se.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and set(missing) <= se_keys - plain_keys
    se.double().eval()
    for a, b in zip(plain(x), se(x), strict=True):
        assert a.shape == b.shape
        # the gates on the maps start at 1 - 4.5e-5 (nothing in the neck takes them)
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-3 * a.abs().max().item())


def test_lateral_se_start_is_exact():
    cfg = dict(type='PAFPN', in_channels=IN, out_channels=16, num_outs=5)
    plain = MODELS.build(cfg)
    se = MODELS.build(dict(type='SENeck', neck=cfg, se_outputs=False, se_lateral=True,
                           se_ratio=4))
    se.load_state_dict(plain.state_dict(), strict=False)
    plain.double().eval(), se.double().eval()
    x = feats(IN, torch.float64)
    for a, b in zip(plain(x), se(x), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)


def test_se_sits_on_inputs_and_outputs():
    cfg = dict(type='ChannelMapper', in_channels=IN, out_channels=16, num_outs=3)
    se = MODELS.build(dict(type='SENeck', neck=cfg, se_inputs=True, se_ratio=4)).eval()
    plain = MODELS.build(cfg).eval()
    plain.load_state_dict(se.state_dict(), strict=False)
    x = feats(IN)
    expected = [out_se(o) for out_se, o in
                zip(se.output_se_layers, plain(tuple(s(f) for s, f in
                                                    zip(se.input_se_layers, x))))]
    for a, b in zip(se(x), expected, strict=True):
        torch.testing.assert_close(a, b)


def test_seneck_around_fpn_is_sefpn():
    cfg = dict(in_channels=IN, out_channels=8, num_outs=5)
    a = MODELS.build(dict(type='SENeck', neck=dict(type='FPN', **cfg), se_lateral=True,
                          se_outputs=True, se_ratio=4, neutral_start=False))
    b = SEFPN(**cfg, se_lateral=True, se_output=True, se_ratio=4)
    assert type(a) is SEFPN
    assert {k: v.shape for k, v in a.state_dict().items()} == \
        {k: v.shape for k, v in b.state_dict().items()}
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    x = feats(IN)
    for u, v in zip(a(x), b(x), strict=True):
        torch.testing.assert_close(u, v)
    assert isinstance(a, FPN)


def test_bad_input():
    with pytest.raises(TypeError, match='neck config dict with a type'):
        SENeck(neck='FPN')
    with pytest.raises(ValueError, match='se_lateral=True needs a neck with lateral_convs.*'
                                         'ChannelMapper'):
        MODELS.build(dict(type='SENeck', se_lateral=True, neck=dict(
            type='ChannelMapper', in_channels=IN, out_channels=16)))
    with pytest.raises(ValueError, match='at least one of se_inputs, se_outputs'):
        MODELS.build(dict(type='SENeck', se_outputs=False, neck=dict(
            type='ChannelMapper', in_channels=IN, out_channels=16)))
    with pytest.raises(KeyError, match="'NoNeck' is not in the mmdet registry"):
        MODELS.build(dict(type='SENeck', neck=dict(type='NoNeck')))


def test_backbones_and_necks_share_one_neutral_start():
    """SEBackbone's and SENeck's classes, subclass cache and load hook are one copy
    (seplugin/models/layers/se_host.py), not one each."""
    from seplugin.models import SEBackbone
    from seplugin.models.backbones.se_backbone import SEBackboneMixin
    from seplugin.models.layers import se_host
    from seplugin.models.necks.se_neck import SENeckMixin
    for mixin in (SEBackboneMixin, SENeckMixin):
        assert mixin._load_from_state_dict is se_host.SEHostMixin._load_from_state_dict
    neck = SENeck(neck=dict(type='PAFPN', in_channels=[16, 32], out_channels=16, num_outs=2))
    backbone = SEBackbone(backbone=dict(type='mmpretrain.ShuffleNetV2', widen_factor=0.5))
    for module in (neck, backbone):
        assert list(module._load_state_dict_post_hooks.values()) == \
            [se_host.start_missing_se_neutral]
    assert type(neck) is se_host.se_host_class(SENeckMixin, type(neck).__bases__[1])
