import pytest
import torch
from mmpretrain.models.backbones import SEResNeXt as MMPretrainSEResNeXt

from seplugin.models import SEResNeXt


def test_loads_mmpretrain_checkpoint_strictly_with_equal_outputs():
    ref = MMPretrainSEResNeXt(50, groups=8, width_per_group=4, base_channels=32,
                              out_indices=(0, 1, 2, 3))
    ref.init_weights()
    for p in ref.parameters():
        p.data.add_(torch.randn_like(p) * 0.01)
    ours = SEResNeXt(50, groups=8, width_per_group=4, base_channels=32, stem_channels=64)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ref.eval(), ours.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(ref(x), ours(x)):
            torch.testing.assert_close(a, b)


def test_32x4d_widths_and_groups():
    model = SEResNeXt(50)
    conv2 = model.layer1[0].conv2
    assert (conv2.in_channels, conv2.groups) == (128, 32)
    assert model.layer4[0].conv2.in_channels == 1024
    assert model.layer1[0].se_layer.squeeze_channels == 16


@pytest.mark.parametrize('depth', [50, 101, 152])
def test_depths(depth):
    model = SEResNeXt(depth, groups=4, base_width=4, base_channels=16, se_ratio=4)
    assert model(torch.randn(2, 3, 32, 32))[-1].shape == (2, 512, 1, 1)


def test_se_3x3_uses_grouped_width():
    model = SEResNeXt(50, se_position='3x3')
    assert model.layer1[0].se_layer.in_channels == 128


def test_bad_input():
    with pytest.raises(ValueError, match=r'invalid depth 18 for SEResNeXt; expected one of '
                                         r'\[50, 101, 152\]'):
        SEResNeXt(18)
    with pytest.raises(ValueError, match=r'base_width 8 and width_per_group 4 are the same'):
        SEResNeXt(50, base_width=8, width_per_group=4)
