"""The mmpretrain scope's SEResNet/SEResNeXt against MMPretrain's own classes, option by
option: same defaults, same state-dict keys (strict loads), same outputs."""
import pytest
import torch
from mmdet.registry import MODELS as MMDET_MODELS
from mmengine.registry import DefaultScope
from mmpretrain.models.backbones import ResNet as UpstreamResNet
from mmpretrain.models.backbones import SEResNet as UpstreamSEResNet
from mmpretrain.models.backbones import SEResNeXt as UpstreamSEResNeXt
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from torch.nn.modules.batchnorm import _BatchNorm
from toy import randomise_norms

from seplugin.models import MMPretrainSEResNet, MMPretrainSEResNeXt, SEResNet, SEResNeXt
from seplugin.registry import MODELS as SEPLUGIN_MODELS


def build(cfg: dict, scope: str = 'mmpretrain') -> torch.nn.Module:
    with DefaultScope.overwrite_default_scope(scope):
        return MMPRETRAIN_MODELS.build(cfg)


def assert_same_function(ref, ours, in_channels=3, size=48):
    """Strict load, then equal outputs with running statistics (float32, no gradient) and,
    in training mode with batch statistics and stochastic depth, equal outputs, input and
    parameter gradients (float64, with autograd recording, so that the lean SE tail's
    backward is compared with MMPretrain's modules; in float32 its training pass rounds
    differently, ~1e-4 on outputs of scale 6)."""
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, in_channels, size, size)
    for train, dtype in ((False, torch.float32), (True, torch.float64)):
        ref.to(dtype).train(train)
        ours.to(dtype).train(train)
        results = []
        for model in (ref, ours):
            model.zero_grad()
            inp = x.to(dtype).requires_grad_(train)
            torch.manual_seed(1)
            with torch.set_grad_enabled(train):
                outs = model(inp)
                if train:
                    sum(o.mul(torch.linspace(-1, 1, o.numel(), dtype=dtype).view_as(o))
                        .sum() for o in outs).backward()
            grads = {n: p.grad for n, p in model.named_parameters()} if train else {}
            results.append(([o.detach() for o in outs], inp.grad, grads))
        (expected, ref_input_grad, ref_grads), (actual, input_grad, grads) = results
        assert len(actual) == len(expected)
        for a, b in zip(actual, expected):
            torch.testing.assert_close(a, b)
        if train:
            torch.testing.assert_close(input_grad, ref_input_grad)
            assert grads.keys() == ref_grads.keys()
            for name, grad in grads.items():
                torch.testing.assert_close(grad, ref_grads[name],
                                           msg=lambda m, n=name: f'{n}: {m}')
    # frozen_stages and norm_eval: the same parameters frozen, the same norms in eval mode
    assert frozen(ours) == frozen(ref)
    assert training_norms(ours) == training_norms(ref)


def frozen(model):
    return {name for name, p in model.named_parameters() if not p.requires_grad}


def training_norms(model):
    return {name for name, m in model.named_modules() if isinstance(m, _BatchNorm)
            and m.training}


def test_scopes_resolve_to_their_flavour():
    assert MMPRETRAIN_MODELS.get('SEResNet') is MMPretrainSEResNet
    assert MMPRETRAIN_MODELS.get('SEResNeXt') is MMPretrainSEResNeXt
    assert MMDET_MODELS.get('SEResNet') is SEResNet
    assert SEPLUGIN_MODELS.get('SEResNeXt') is SEResNeXt
    assert MMPRETRAIN_MODELS.get('seplugin.SEResNet') is SEResNet
    assert MMPRETRAIN_MODELS.get('ResNet') is UpstreamResNet  # only the SE names change


def test_defaults_are_mmpretrains():
    ours = build(dict(type='SEResNet', depth=50))
    ref = UpstreamSEResNet(50)
    for name in ('out_indices', 'stem_channels', 'base_channels', 'norm_eval', 'deep_stem',
                 'avg_down', 'frozen_stages', 'zero_init_residual', 'init_cfg', 'norm_cfg',
                 'strides', 'dilations', 'style', 'with_cp', 'feat_dim', 'stage_blocks'):
        assert getattr(ours, name) == getattr(ref, name), name
    assert len(ours(torch.randn(1, 3, 64, 64))) == 1  # one feature map, as MMPretrain's
    assert list(ours.state_dict()) == list(ref.state_dict())
    for (name, a), b in zip(ours.state_dict().items(), ref.state_dict().values()):
        assert a.shape == b.shape, name


# narrow (base_channels=16, SE widths 8..32) unless the option is about widths
@pytest.mark.parametrize('kwargs', [
    dict(base_channels=16),
    dict(base_channels=16, deep_stem=True, avg_down=True, stem_channels=32),
    dict(base_channels=32),                      # the stem stays 64 wide
    dict(base_channels=16, se_ratio=32,          # SE widths 2..16 rounded to 8..16
         out_indices=(0, 1, 2, 3)),
    dict(base_channels=16, style='caffe', frozen_stages=2, in_channels=1),
    dict(base_channels=16, frozen_stages=0, norm_eval=True, with_cp=True),
    dict(base_channels=16, num_stages=3, strides=(1, 2, 2), dilations=(1, 1, 2),
         out_indices=(1, 2)),
    dict(base_channels=16, norm_cfg=dict(type='GN', num_groups=4, requires_grad=True),
         deep_stem=True),
], ids=repr)
def test_se_resnet_option_matches_mmpretrain(kwargs):
    ref = randomise_norms(UpstreamSEResNet(50, **kwargs))
    ours = build(dict(type='SEResNet', depth=50, **kwargs))
    assert_same_function(ref, ours, in_channels=kwargs.get('in_channels', 3))


@pytest.mark.parametrize('kwargs', [
    dict(base_channels=16),
    dict(base_channels=16, groups=16, width_per_group=8, avg_down=True, deep_stem=True),
], ids=repr)
def test_se_resnext_option_matches_mmpretrain(kwargs):
    ref = randomise_norms(UpstreamSEResNeXt(50, **kwargs))
    ours = build(dict(type='SEResNeXt', depth=50, **kwargs))
    assert type(ours) is MMPretrainSEResNeXt
    assert_same_function(ref, ours)


def test_se_resnext_applies_se_ratio_where_mmpretrain_ignores_it():
    """MMPretrain's SEResNeXt.make_res_layer does not pass se_ratio on: its SE layers are
    C // 16 whatever the config says. seplugin's follow se_ratio (README)."""
    ref = UpstreamSEResNeXt(50, se_ratio=32, base_channels=16)
    ours = build(dict(type='SEResNeXt', depth=50, se_ratio=32, base_channels=16))
    widths = [(b.se_layer.conv1.conv.out_channels, r.se_layer.conv1.conv.out_channels)
              for b, r in zip(ours.layer4, ref.layer4)]
    assert widths == [(16, 32)] * 3  # 512 // 32 and 512 // 16


def test_plain_resnet_v1d_with_num_stages_and_drop_path():
    """Drop-path rates spread over the whole depth, even when fewer stages are built."""
    kwargs = dict(num_stages=3, strides=(1, 2, 2), dilations=(1, 1, 1), out_indices=(2,),
                  deep_stem=True, avg_down=True, drop_path_rate=0.5, base_channels=16)
    ref = randomise_norms(UpstreamResNet(50, **kwargs))
    ours = build(dict(type='SEResNet', depth=50, se_stages=(False,) * 3, **kwargs))
    assert_same_function(ref, ours)


def test_init_weights_zero_inits_like_mmpretrain():
    ref = UpstreamSEResNet(50, base_channels=16)
    ref.init_weights()
    ours = build(dict(type='SEResNet', depth=50, base_channels=16))
    ours.init_weights()
    assert all(torch.all(b.norm3.weight == 0) for b in ours.blocks())
    assert all(torch.all(m.weight == 1) for m in ours.modules()
               if isinstance(m, _BatchNorm) and not m.weight.eq(0).all())
    # the same rule as MMPretrain: no zero init when the init_cfg loads a checkpoint
    ours = build(dict(type='SEResNet', depth=50, base_channels=16,
                      init_cfg=dict(type='Pretrained', checkpoint='x')))
    assert all(b.init_cfg is None for b in ours.blocks())
    assert [b.norm3.weight.eq(0).all().item() for b in ref.layer1] == [True] * 3


@pytest.mark.parametrize('cfg,message', [
    (dict(depth=50, expansion=2), r'expansion 2 does not match depth 50'),
    (dict(depth=50, pretrained='x.pth'), r"takes no pretrained='x.pth'"),
    (dict(depth=42), r'invalid depth 42'),
])
def test_options_that_cannot_match_are_refused(cfg, message):
    with pytest.raises(ValueError, match=message):
        build(dict(type='SEResNet', **cfg))


def test_positional_arguments_beyond_depth_are_refused():
    # MMPretrain's SEResNeXt takes groups second, SEResNet se_ratio: neither is guessed
    with pytest.raises(TypeError):
        MMPretrainSEResNeXt(50, 32)


def test_se_cfg_can_still_choose_the_papers_floor():
    """se_cfg overrides the scope's rounding: divisor=1 is the paper's floor(C / r)."""
    rounded = build(dict(type='SEResNet', depth=18, base_channels=16, se_ratio=4))
    floor = build(dict(type='SEResNet', depth=18, base_channels=16, se_ratio=4,
                       se_cfg=dict(divisor=1)))
    assert [b.se_layer.squeeze_channels for b in rounded.blocks()] == [8, 8, 8, 8, 16, 16, 32, 32]
    assert [b.se_layer.squeeze_channels for b in floor.blocks()] == [4, 4, 8, 8, 16, 16, 32, 32]
