"""SEBackbone against the upstream backbones themselves: keys kept, the plain network's
outputs after the neutral start, SE before the residual addition, the paper's counts."""
import copy

import pytest
import torch
from mmdet.registry import MODELS as MMDET_MODELS
from mmengine.model import revert_sync_batchnorm
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from torch import nn
from toy import randomise_norms

from seplugin.models import SEBackbone, SEResNet
from seplugin.models.backbones.mmpretrain_se_resnet import MMPretrainSEResNet
from seplugin.models.layers.se_after import SEAfterMixin

REGISTRIES = {'mmdet': MMDET_MODELS, 'mmpretrain': MMPRETRAIN_MODELS}
HRNET_EXTRA = dict(
    stage1=dict(num_modules=1, num_branches=1, block='BOTTLENECK', num_blocks=(1,),
                num_channels=(16,)),
    stage2=dict(num_modules=1, num_branches=2, block='BASIC', num_blocks=(1, 1),
                num_channels=(16, 32)),
    stage3=dict(num_modules=1, num_branches=3, block='BASIC', num_blocks=(1, 1, 1),
                num_channels=(16, 32, 64)),
    stage4=dict(num_modules=1, num_branches=4, block='BASIC', num_blocks=(1, 1, 1, 1),
                num_channels=(16, 32, 64, 128)))
# (scope, backbone cfg, input size, exact): exact where every SE follows a norm, conv or
# linear layer with at most ReLU/LeakyReLU after it; else the gate starts at 1 - 4.5e-5.
KINDS = [
    ('mmpretrain', dict(type='ShuffleNetV1', groups=3, widen_factor=0.5), 32, True),
    ('mmpretrain', dict(type='ShuffleNetV2', widen_factor=0.5), 32, True),
    ('mmpretrain', dict(type='MobileNetV2', widen_factor=0.5), 32, True),
    ('mmpretrain', dict(type='RegNet', arch='regnetx_400mf'), 32, True),
    ('mmpretrain', dict(type='VGG', depth=11, norm_cfg=dict(type='BN')), 32, True),
    ('mmpretrain', dict(type='VGG', depth=11), 32, True),
    ('mmpretrain', dict(type='ConvNeXt', arch='atto'), 32, True),
    ('mmpretrain', dict(type='ConvNeXt', arch='atto', linear_pw_conv=False), 32, True),
    ('mmpretrain', dict(type='CSPResNet', depth=50), 32, True),
    ('mmpretrain', dict(type='ResNetV1d', depth=18), 32, True),
    ('mmpretrain', dict(type='InceptionV3'), 96, False),
    ('mmdet', dict(type='RegNet', arch='regnetx_400mf'), 32, True),
    ('mmdet', dict(type='ResNeXt', depth=50, groups=32, base_width=4), 32, True),
    ('mmdet', dict(type='Res2Net', depth=50), 32, True),
    ('mmdet', dict(type='ResNeSt', depth=50), 32, True),
    ('mmdet', dict(type='ResNetV1d', depth=18), 32, True),
    ('mmdet', dict(type='HRNet', extra=HRNET_EXTRA), 32, True),
    ('mmdet', dict(type='MobileNetV2', widen_factor=0.5), 32, True),
    ('mmdet', dict(type='Darknet', depth=53), 32, True),
    ('mmdet', dict(type='CSPDarknet', deepen_factor=0.33, widen_factor=0.25), 32, False),
    ('mmdet', dict(type='CSPNeXt', deepen_factor=0.167, widen_factor=0.375), 32, False),
]
IDS = [f'{scope}-{cfg["type"]}-{i}' for i, (scope, cfg, _, _) in enumerate(KINDS)]


def outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    out = model(x)
    return [out] if torch.is_tensor(out) else [o for o in out if o is not None]


def plain_and_se(scope: str, cfg: dict, **se_args) -> tuple[nn.Module, nn.Module]:
    registry = REGISTRIES[scope]
    plain = registry.build(copy.deepcopy(cfg))
    randomise_norms(plain, shift=0.6, scale=(0.5, 2))
    se = registry.build(dict(type='SEBackbone', backbone=copy.deepcopy(cfg), **se_args))
    return plain, se


@pytest.mark.parametrize('scope,cfg,size,exact', KINDS, ids=IDS)
def test_plain_weights_load_unchanged_and_start_neutral(scope, cfg, size, exact):
    plain, se = plain_and_se(scope, cfg)
    assert list(se.se_layers()), 'no SE layer inserted'
    plain_keys, se_keys = set(plain.state_dict()), set(se.state_dict())
    assert plain_keys <= se_keys
    assert all('.se_layer.' in k for k in se_keys - plain_keys)
    missing, unexpected = se.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and set(missing) == {k for k in se_keys - plain_keys
                                               if k.endswith(('weight', 'bias'))}
    plain.double().eval(), se.double().eval()
    x = torch.rand(2, 3, size, size, dtype=torch.float64)
    for a, b in zip(outputs(plain, x), outputs(se, x), strict=True):
        if exact:
            torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
        else:  # the gate is 1 - 4.5e-5, compounded over the layers
            torch.testing.assert_close(b, a, rtol=2e-3, atol=2e-3 * a.abs().max().item())
            assert not torch.equal(a, b)


@pytest.mark.parametrize('scope,cfg,size,exact', KINDS[:3] + KINDS[6:7] + KINDS[11:12],
                         ids=IDS[:3] + IDS[6:7] + IDS[11:12])
def test_one_step_reaches_every_se_layer(scope, cfg, size, exact):
    _, se = plain_and_se(scope, cfg)
    se.train()
    loss = sum(o.square().mean() for o in outputs(se, torch.rand(2, 3, size, size)))
    loss.backward()
    for name, layer in se.se_layers():
        grads = [p.grad for p in layer.parameters()]
        # every parameter in the graph; the gate's (a narrow hidden ReLU may be all 0)
        assert all(g is not None for g in grads), name
        assert layer.conv2.conv.bias.grad.abs().sum() > 0, name


def closed_gates(model: nn.Module) -> None:
    """Every SE gate 0: the branch it ends contributes nothing."""
    with torch.no_grad():
        for _, layer in model.se_layers():
            layer.conv2.conv.weight.zero_()
            layer.conv2.conv.bias.fill_(-1e4)


@pytest.mark.parametrize('scope,block_path,expected', [
    # (block output with its SE gate closed) == what only the shortcut gives
    ('mmdet', 'layer2.1', lambda x, block: block.relu(x)),                     # RegNet
    ('mmpretrain', 'layers.1.1', lambda x, block: torch.relu(x)),              # ShuffleNetV1
    ('mmpretrain', 'layer3.1', lambda x, block: x),                          # MobileNetV2
    ('mmpretrain', 'stages.1.0', lambda x, block: x),                          # ConvNeXt
])
def test_se_sits_on_the_branch_before_the_addition(scope, block_path, expected):
    cfg = {'layer2.1': dict(type='RegNet', arch='regnetx_400mf'),
           'layers.1.1': dict(type='ShuffleNetV1', groups=3, widen_factor=0.5),
           'layer3.1': dict(type='MobileNetV2', widen_factor=0.5),
           'stages.1.0': dict(type='ConvNeXt', arch='atto')}[block_path]
    _, se = plain_and_se(scope, cfg)
    # a zero map through a norm is its bias: a misplaced SE shows
    randomise_norms(se, shift=0.6, scale=(0.5, 2))
    block = se.get_submodule(block_path).eval()
    closed_gates(se)
    channels = next(m for m in block.modules() if isinstance(m, nn.Conv2d)).in_channels
    x = torch.randn(2, channels, 8, 8)
    torch.testing.assert_close(block(x), expected(x, block))


@pytest.mark.parametrize('scope,cls', [('mmdet', SEResNet), ('mmpretrain', MMPretrainSEResNet)])
def test_plain_resnet_is_exactly_seresnet(scope, cls):
    cfg = dict(type='ResNet', depth=18, out_indices=(1, 3))
    se = REGISTRIES[scope].build(dict(type='SEBackbone', backbone=cfg, se_ratio=8))
    direct = REGISTRIES[scope].build(dict(type='SEResNet', depth=18, out_indices=(1, 3),
                                          se_ratio=8))
    assert type(se) is cls is type(direct)
    assert {k: v.shape for k, v in se.state_dict().items()} == \
        {k: v.shape for k, v in direct.state_dict().items()}


def test_pretrained_init_cfg_starts_neutral(tmp_path):
    cfg = dict(type='ShuffleNetV2', widen_factor=0.5)
    plain = MMPRETRAIN_MODELS.build(cfg)
    randomise_norms(plain, shift=0.6, scale=(0.5, 2))
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in plain.state_dict().items()}},
               tmp_path / 'plain.pth')
    se = MMPRETRAIN_MODELS.build(dict(
        type='SEBackbone', backbone=cfg,
        init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'plain.pth'),
                      prefix='backbone.')))
    se.init_weights()
    plain.double().eval(), se.double().eval()
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    torch.testing.assert_close(se(x)[0], plain(x)[0], rtol=1e-12, atol=1e-12)


def test_loading_se_weights_keeps_them():
    _, se = plain_and_se('mmpretrain', dict(type='ShuffleNetV2', widen_factor=0.5))
    other = MMPRETRAIN_MODELS.build(dict(type='SEBackbone',
                                         backbone=dict(type='ShuffleNetV2', widen_factor=0.5)))
    other.load_state_dict(se.state_dict())
    for key, value in se.state_dict().items():
        torch.testing.assert_close(other.state_dict()[key], value, msg=key)


def test_se_stages_select_stages():
    cfg = dict(type='RegNet', arch='regnetx_400mf')
    se = MMDET_MODELS.build(dict(type='SEBackbone', backbone=cfg,
                                 se_stages=(False, True, False, True)))
    stages = {name.split('.')[0] for name, _ in se.se_layers()}
    assert stages == {'layer2', 'layer4'}
    with pytest.raises(ValueError, match=r'has 2 flags; SERegNet has 4 stages|RegNet has 4'):
        MMDET_MODELS.build(dict(type='SEBackbone', backbone=cfg, se_stages=(True, True)))


def test_se_options_reach_every_layer():
    se = MMPRETRAIN_MODELS.build(dict(type='SEBackbone',
                                      backbone=dict(type='MobileNetV2', widen_factor=0.5),
                                      se_ratio=4, se_cfg=dict(gate='hsigmoid', squeeze='max')))
    for _, layer in se.se_layers():
        assert (layer.gate_type, layer.squeeze) == ('hsigmoid', 'max')
        assert layer.squeeze_channels == layer.in_channels // 4
    with pytest.raises(ValueError, match="se_cfg may not set 'ratio'"):
        MMPRETRAIN_MODELS.build(dict(type='SEBackbone', backbone=dict(type='MobileNetV2'),
                                     se_cfg=dict(ratio=8)))


def test_se_after_patterns_place_se_anywhere():
    cfg = dict(type='LeNet5', num_classes=0)
    plain, se = plain_and_se('mmpretrain', cfg, se_after=['features.0', 'features.3'],
                             se_ratio=2)
    assert [name for name, _ in se.se_layers()] == ['features.0.se_layer', 'features.3.se_layer']
    se.load_state_dict(plain.state_dict(), strict=False)
    plain.double().eval(), se.double().eval()
    x = torch.rand(2, 1, 32, 32, dtype=torch.float64)
    torch.testing.assert_close(outputs(se, x)[0], outputs(plain, x)[0], rtol=1e-12, atol=1e-12)


def test_unknown_kind_names_the_backbone_and_its_candidates():
    with pytest.raises(ValueError, match=r'no SE placement preset for LeNet5.*se_after.*'
                                         r"candidates: \['features\.\*'"):
        MMPRETRAIN_MODELS.build(dict(type='SEBackbone', backbone=dict(type='LeNet5')))


def test_pattern_matching_nothing_is_an_error():
    with pytest.raises(ValueError, match=r"se_after patterns \['stages\.\*\.norm'\] match no "
                                         r'module of LeNet5'):
        MMPRETRAIN_MODELS.build(dict(type='SEBackbone', backbone=dict(type='LeNet5'),
                                     se_after=['stages.*.norm']))


def test_bad_backbone_cfg():
    with pytest.raises(TypeError, match='backbone config dict with a type'):
        SEBackbone(backbone='ShuffleNetV2')
    with pytest.raises(KeyError, match="'NoSuchNet' is not in the mmpretrain registry"):
        MMPRETRAIN_MODELS.build(dict(type='SEBackbone', backbone=dict(type='NoSuchNet')))


def test_se_survives_sync_batchnorm_conversion():
    _, se = plain_and_se('mmdet', dict(type='RegNet', arch='regnetx_400mf'))
    se.eval()
    x = torch.rand(2, 3, 32, 32)
    before = outputs(se, x)[0]
    converted = revert_sync_batchnorm(nn.SyncBatchNorm.convert_sync_batchnorm(se))
    site = converted.get_submodule(converted.se_sites[0])
    assert not isinstance(site, SEAfterMixin)  # the converters rebuild the norms plainly
    torch.testing.assert_close(outputs(converted, x)[0], before)
    assert isinstance(converted.get_submodule(converted.se_sites[0]), SEAfterMixin)


def test_se_shufflenet_parameter_count_matches_the_paper():
    """Hu et al., Table 3: SE-ShuffleNet 1x (g=3), 2.4M parameters (1000 classes)."""
    model = MMPRETRAIN_MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='SEBackbone', backbone=dict(type='ShuffleNetV1', groups=3)),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=1000, in_channels=960)))
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 2.4
