"""SEResNet: sizes, compatibility with mmpretrain, every ResNet option, SE placements."""
import pytest
import torch
import torch.nn.functional as F
from mmdet.models.backbones import ResNet
from mmpretrain.models.backbones import ResNet as MMPretrainResNet
from mmpretrain.models.backbones import SEResNet as MMPretrainSEResNet
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from torch.nn.modules.batchnorm import _BatchNorm

from seplugin.models import SE_POSITIONS, SEResNet
from seplugin.models.backbones import mmpretrain_se_resnet

TINY = dict(base_channels=8, se_ratio=4)  # 32..256 channels: every SE keeps >= 2 channels


def image(n=2, size=64):
    return torch.randn(n, 3, size, size)


def classifier_params(depth, backbone='SEResNet'):
    model = MMPRETRAIN_MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type=backbone, depth=depth, out_indices=(3,)),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=1000, in_channels=2048)))
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize('depth,params', [(50, 28_088_024), (101, 49_326_872),
                                          (152, 66_821_848)])
def test_paper_parameter_counts(depth, params):
    assert classifier_params(depth) == params


def test_plain_resnet50_parameter_count():
    assert classifier_params(50, 'ResNet') == 25_557_032


def test_loads_mmpretrain_checkpoint_strictly_with_equal_outputs():
    ref = MMPretrainSEResNet(50, out_indices=(0, 1, 2, 3))
    ref.init_weights()
    for p in ref.parameters():  # non-trivial weights everywhere, the BN affine included
        p.data.add_(torch.randn_like(p) * 0.01)
    ours = SEResNet(50, norm_eval=False)  # MMPretrain trains its BN
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = image()
    for mode in (False, True):  # eval uses running stats, train uses batch statistics
        ref.train(mode)
        ours.train(mode)
        with torch.no_grad():
            for a, b in zip(ref(x), ours(x)):
                torch.testing.assert_close(a, b)


@pytest.mark.parametrize('depth', [18, 34, 50, 101, 152])
@pytest.mark.parametrize('scope', ['mmdet', 'mmpretrain'])
def test_every_depth_builds_in_both_scopes(depth, scope):
    from mmengine.registry import MODELS, DefaultScope
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(dict(type='SEResNet', depth=depth, out_indices=(0, 1, 2, 3),
                                  stem_channels=8, **TINY))
    # the mmpretrain scope's flavour: MMPretrain's defaults (test_mmpretrain_se_resnet.py)
    assert type(model) is (SEResNet if scope == 'mmdet'
                           else mmpretrain_se_resnet.MMPretrainSEResNet)
    outs = model(image(1))
    expansion = 1 if depth < 50 else 4
    assert [o.shape[1] for o in outs] == [8 * expansion * 2 ** i for i in range(4)]


def test_scoped_name_resolves_everywhere():
    from mmdet.registry import MODELS as MMDET_MODELS
    for registry in (MMDET_MODELS, MMPRETRAIN_MODELS):
        assert registry.get('seplugin.SEResNet') is SEResNet
    assert MMPRETRAIN_MODELS.get('SEResNet') is mmpretrain_se_resnet.MMPretrainSEResNet
    assert MMPRETRAIN_MODELS.get('ResNet') is MMPretrainResNet  # only the SE names change


def test_output_shapes_and_out_indices():
    model = SEResNet(50, out_indices=(1, 3), **TINY)
    outs = model(image(size=96))
    assert [tuple(o.shape) for o in outs] == [(2, 64, 12, 12), (2, 256, 3, 3)]


def test_se_stages_and_counts():
    model = SEResNet(50, se_stages=(False, True, False, True), **TINY)
    names = [name for name, _ in model.se_layers()]
    assert len(names) == 4 + 3
    assert all(n.startswith(('layer2.', 'layer4.')) for n in names)


def test_no_se_is_exactly_mmdet_resnet():
    plain = ResNet(50, base_channels=8)
    plain.init_weights()
    ours = SEResNet(50, se_stages=(False,) * 4, base_channels=8)
    ours.load_state_dict(plain.state_dict(), strict=True)
    plain.eval(), ours.eval()
    x = image()
    for a, b in zip(plain(x), ours(x)):
        torch.testing.assert_close(a, b)


def block_reference(block, x, position):
    """The paper's Fig. 5 placements, composed from the block's own layers."""
    se = getattr(block, 'se_layer', None)
    branch_in = se(x) if position == 'pre' else x
    out = F.relu(block.norm1(block.conv1(branch_in)))
    out = F.relu(block.norm2(block.conv2(out)))
    if position == '3x3':
        out = se(out)
    out = block.norm3(block.conv3(out))
    if position == 'standard':
        out = se(out)
    identity = block.downsample(x) if block.downsample is not None else x
    if position == 'identity':
        identity = se(identity)
    out = F.relu(out + identity)
    return se(out) if position == 'post' else out


@pytest.mark.parametrize('position', SE_POSITIONS)
def test_se_positions_match_the_paper(position):
    model = SEResNet(50, se_position=position, **TINY).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.2)
    block = model.layer2[0]  # has a downsample shortcut
    channels = {'pre': 32, '3x3': 16}.get(position, 64)
    assert block.se_layer.in_channels == channels
    x = torch.randn(2, 32, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(block(x), block_reference(block, x, position))
        second = model.layer2[1]  # identity shortcut
        x = block(x)
        torch.testing.assert_close(second(x), block_reference(second, x, position))


@pytest.mark.parametrize('position', [p for p in SE_POSITIONS if p != '3x3'])
def test_basic_block_positions(position):
    model = SEResNet(18, se_position=position, base_channels=16, se_ratio=4).eval()
    block = model.layer1[0]
    x = torch.randn(2, 16, 8, 8)
    se = block.se_layer
    out = block.norm2(block.conv2(F.relu(block.norm1(block.conv1(se(x) if position == 'pre'
                                                                   else x)))))
    out = se(out) if position == 'standard' else out
    out = F.relu(out + (se(x) if position == 'identity' else x))
    out = se(out) if position == 'post' else out
    with torch.no_grad():
        torch.testing.assert_close(block(x), out)


def test_with_cp_same_outputs_and_grads():
    x = image()
    grads = []
    for with_cp in (False, True):
        torch.manual_seed(0)
        model = SEResNet(50, with_cp=with_cp, **TINY)
        xi = x.clone().requires_grad_()
        sum(o.sum() for o in model(xi)).backward()
        grads.append((xi.grad, model.layer3[0].se_layer.conv1.conv.weight.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_frozen_stages_and_norm_eval():
    model = SEResNet(50, frozen_stages=2, norm_eval=True, **TINY)
    model.train()
    assert not any(p.requires_grad for p in model.layer2.parameters())
    assert not model.layer2[0].se_layer.conv1.conv.weight.requires_grad
    assert all(p.requires_grad for p in model.layer3.parameters())
    assert all(not m.training for m in model.modules() if isinstance(m, _BatchNorm))
    # mmdet's default, norm_eval=True, as mmdet's ResNet; False trains every BN
    default = SEResNet(50, **TINY).train()
    reference = ResNet(50, base_channels=TINY['base_channels'])
    reference.train()  # mmdet's ResNet.train returns None
    assert default.norm_eval is reference.norm_eval is True
    assert not any(m.training for m in default.modules() if isinstance(m, _BatchNorm))
    trained = SEResNet(50, norm_eval=False, **TINY).train()
    assert all(m.training for m in trained.modules() if isinstance(m, _BatchNorm))


def test_norm_cfg_group_norm():
    model = SEResNet(50, norm_cfg=dict(type='GN', num_groups=4), **TINY)
    assert type(model.layer1[0].norm3).__name__ == 'GroupNorm'
    model(image())


def test_dcn_stages():
    model = SEResNet(50, dcn=dict(type='DCN', deform_groups=1, fallback_on_stride=False),
                     stage_with_dcn=(False, True, True, False), **TINY)
    assert type(model.layer2[0].conv2).__name__ == 'DeformConv2dPack'
    assert type(model.layer1[0].conv2).__name__ == 'Conv2d'
    assert model(image())[-1].shape == (2, 256, 2, 2)


def test_extra_plugins_next_to_se():
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = SEResNet(50, plugins=[dict(cfg=dict(type='ContextBlock', ratio=1. / 4),
                                           position='after_conv3',
                                           stages=(False, False, True, True))], **TINY)
    assert hasattr(model.layer3[0], 'context_block') and hasattr(model.layer3[0], 'se_layer')
    assert not hasattr(model.layer1[0], 'context_block')
    model(image())


def test_stem_pool():
    x = image(1, 97)  # odd size: padded floor pooling and unpadded ceil pooling differ
    pad, ceil = SEResNet(50, **TINY).maxpool, SEResNet(50, stem_pool='ceil', **TINY).maxpool
    assert (pad.padding, pad.ceil_mode, ceil.padding, ceil.ceil_mode) == (1, False, 0, True)
    assert pad(x).shape[-1] == 49 and ceil(x).shape[-1] == 48


def test_style_deep_stem_avg_down_strides_dilations():
    caffe = SEResNet(50, style='caffe', **TINY)
    assert caffe.layer2[0].conv1.stride == (2, 2) and caffe.layer2[0].conv2.stride == (1, 1)
    stem = SEResNet(50, deep_stem=True, avg_down=True, **TINY)
    assert hasattr(stem, 'stem')
    assert type(stem.layer2[0].downsample[0]).__name__ == 'AvgPool2d'
    stem(image())
    dilated = SEResNet(50, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), **TINY)
    assert dilated.layer4[0].conv2.dilation == (4, 4)
    assert dilated(image(size=64))[-1].shape[-1] == 8


@pytest.mark.parametrize('depth,norm', [(50, 'norm3'), (18, 'norm2')])
def test_zero_init_residual(depth, norm):
    model = SEResNet(depth, **TINY)
    model.init_weights()
    assert all((getattr(b, norm).weight == 0).all() for b in model.blocks())
    kept = SEResNet(depth, zero_init_residual=False, **TINY)
    kept.init_weights()
    assert all((getattr(b, norm).weight == 1).all() for b in kept.blocks())


def test_init_cfg_pretrained_loads_trunk(tmp_path):
    plain = ResNet(50, base_channels=8)
    plain.init_weights()
    path = tmp_path / 'resnet.pth'
    torch.save({'state_dict': plain.state_dict()}, path)
    model = SEResNet(50, init_cfg=dict(type='Pretrained', checkpoint=str(path)), **TINY)
    model.init_weights()
    torch.testing.assert_close(model.layer3[2].conv2.weight, plain.layer3[2].conv2.weight)


def test_drop_path_matches_mmpretrain():
    """Stochastic depth as mmpretrain's ResNet does it (same rates, same random draws)."""
    # mmpretrain's stem stays 64 wide when base_channels changes; mmdet's follows it
    ref = MMPretrainResNet(50, base_channels=8, out_indices=(3,), drop_path_rate=0.5)
    ours = SEResNet(50, se_stages=(False,) * 4, out_indices=(3,), drop_path_rate=0.5,
                    base_channels=8, stem_channels=64, norm_eval=False)
    ours.load_state_dict(ref.state_dict(), strict=True)
    rates = [b.drop_path.drop_prob if hasattr(b.drop_path, 'drop_prob') else 0.0
             for b in ours.blocks()]
    assert rates[0] == 0 and rates[-1] == pytest.approx(0.5)
    x = image()
    torch.manual_seed(1)
    ref.train()
    a = ref(x)[0]
    torch.manual_seed(1)
    b = ours.train()(x)[0]
    torch.testing.assert_close(a, b)
    assert not torch.allclose(ours(x)[0], ours(x)[0])  # random in training...
    ours.eval()
    torch.testing.assert_close(ours(x)[0], ours(x)[0])  # ...and off in eval


def test_drop_path_with_se():
    model = SEResNet(50, drop_path_rate=0.5, **TINY).train()
    x = image()
    assert not torch.allclose(model(x)[-1], model(x)[-1])


@pytest.mark.parametrize('kwargs,message', [
    (dict(depth=42), r'invalid depth 42 for SEResNet; expected one of \[18, 34, 50, 101, 152\]'),
    (dict(depth=50, se_ratio=0), r'SE ratio must be a number > 0, got 0'),
    (dict(depth=50, se_ratio=-1), r'SE ratio must be a number > 0, got -1'),
    (dict(depth=50, se_ratio=1024), r'SE ratio 1024 leaves 0.25 < 1 squeeze channel for 256'),
    (dict(depth=50, se_position='middle'),
     r"unknown SE position 'middle'; expected one of \('standard', 'pre', 'post', "
     r"'identity', '3x3'\)"),
    (dict(depth=50, se_stages=(True, False)),
     r'se_stages \(True, False\) has 2 flags; expected one per stage \(4\)'),
    (dict(depth=50, se_cfg=dict(squeeze='median')), r"unknown SE squeeze 'median'"),
    (dict(depth=50, se_cfg=dict(gate='softmax')), r"unknown SE gate 'softmax'"),
    (dict(depth=50, se_cfg=dict(ratio=8)), r"se_cfg may not set 'ratio' \(8\)"),
    (dict(depth=18, se_position='3x3'), r"SE position '3x3' needs a Bottleneck block, not "
                                        r'SEBasicBlock'),
    (dict(depth=18, plugins=[dict(cfg=dict(type='ContextBlock', ratio=0.25),
                                  position='after_conv3')]),
     r"SEBasicBlock cannot take plugins at \['after_conv3'\]"),
    (dict(depth=50, stem_pool='avg'), r"unknown stem_pool 'avg'; expected one of "
                                      r"\('pad', 'ceil'\)"),
    (dict(depth=50, expansion=2), r'expansion 2 does not match depth 50, whose Bottleneck '
                                  r'has expansion 4'),
])
def test_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SEResNet(**kwargs)
