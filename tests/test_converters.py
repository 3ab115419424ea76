"""Weight conversion from timm, Cadene/legacy timm, mmpretrain and torchvision layouts."""
import subprocess
import sys

import pytest
import timm
import torch
import torchvision
from mmpretrain.registry import MODELS

from seplugin.checkpoint import load_file
from seplugin.converters import ConversionError, convert
from seplugin.models import MMPretrainSEResNet, SEResNet


def randomise(model, gain=(0.5, 1.5)):
    """Non-trivial BN statistics and affine parameters, so equal outputs mean something.
    Deep networks need a smaller ``gain`` (BN weights) to stay out of the chaotic regime,
    where float rounding alone changes the outputs."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(*gain)
            m.bias.data.normal_(0, 0.1)
    return model.eval()


def assert_same_outputs(actual, expected, tolerance=1e-5):
    """Equal up to float rounding, measured against the outputs' scale: seplugin's SE tail
    rounds once (a fused multiply-add) where timm's rounds twice, and the randomised deep
    networks here reach values of 1e6 and more."""
    scale = expected.abs().max()
    torch.testing.assert_close(actual / scale, expected / scale, rtol=0, atol=tolerance)


def classifier(backbone, num_classes=1000):
    return MODELS.build(dict(
        type='ImageClassifier', backbone=dict(backbone, out_indices=(3,)),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=num_classes,
                  in_channels=2048 if backbone['depth'] >= 50 else 512))).eval()


@pytest.mark.parametrize('name,source,expected', [
    ('seresnet50', 'timm', dict(type='SEResNet', depth=50, se_ratio=16)),
    ('legacy_seresnet50', 'timm-legacy',
     dict(type='SEResNet', depth=50, style='caffe', stem_pool='ceil', se_ratio=16)),
    ('legacy_seresnext50_32x4d', 'cadene',
     dict(type='SEResNeXt', depth=50, groups=32, base_width=4, stem_pool='ceil', se_ratio=16)),
])
def test_converted_model_gives_the_source_outputs(name, source, expected):
    src = randomise(timm.create_model(name))
    state, backbone = convert(src.state_dict(), source)
    assert backbone == expected
    model = classifier(backbone)
    model.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 97, 97)  # odd size: the stem pooling must match too
    with torch.no_grad():
        assert_same_outputs(model(x, mode='tensor'), src(x))


def test_timm_deep_stem_variant():
    src = randomise(timm.create_model('seresnet152d'), gain=(0.2, 0.6))
    state, backbone = convert(src.state_dict(), 'timm', backbone_only=True)
    assert backbone == dict(type='SEResNet', depth=152, deep_stem=True, stem_channels=64,
                            avg_down=True, se_ratio=16)
    # the mmpretrain scope's class, whose deep stem and shortcut keys the converter writes
    model = MMPretrainSEResNet(**{k: v for k, v in backbone.items() if k != 'type'}).eval()
    model.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert_same_outputs(model(x)[-1], src.forward_features(x))


def test_mmpretrain_checkpoint_needs_no_conversion():
    model = classifier(dict(type='SEResNet', depth=50))
    original = model.state_dict()
    state, backbone = convert({'state_dict': original, 'meta': {}}, 'mmpretrain')
    assert backbone == dict(type='SEResNet', depth=50, se_ratio=16)
    assert list(state) == list(original)
    assert all(torch.equal(state[k], original[k]) for k in original)


def test_torchvision_resnet_becomes_se_resnet_with_the_same_logits():
    """SE layers start neutral: the converted SE-ResNet-50 computes the plain network."""
    src = randomise(torchvision.models.resnet50())
    state, backbone = convert(src.state_dict(), 'torchvision')
    assert backbone == dict(type='SEResNet', depth=50)
    model = classifier(backbone)
    model.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        # exact: the constant gate 0.5 is divided out of the preceding BN, both powers of 2
        torch.testing.assert_close(model(x, mode='tensor'), src(x), rtol=0, atol=1e-6)


def test_init_cfg_from_plain_resnet_starts_neutral(tmp_path, caplog):
    src = randomise(torchvision.models.resnet50())
    path = tmp_path / 'resnet50.pth'
    torch.save(src.state_dict(), path)
    model = SEResNet(50, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        plain = src.layer4(src.layer3(src.layer2(src.layer1(src.maxpool(src.relu(
            src.bn1(src.conv1(x))))))))
        torch.testing.assert_close(model(x)[-1], plain, rtol=0, atol=1e-6)
    gate = model.layer1[0].se_layer.gate(torch.randn(1, 256, 4, 4))
    assert torch.all(gate == 0.5)
    # the SE layers still learn: their last FC gets a gradient
    model.train()
    model(x)[-1].sum().backward()
    assert model.layer3[0].se_layer.conv2.conv.weight.grad.abs().sum() > 0


def test_init_cfg_keeps_se_weights_of_an_se_checkpoint(tmp_path):
    donor = SEResNet(50)
    donor.init_weights()
    for p in donor.parameters():
        p.data.normal_()
    path = tmp_path / 'se.pth'
    torch.save(donor.state_dict(), path)
    model = SEResNet(50, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    torch.testing.assert_close(model.layer2[1].se_layer.conv2.conv.weight,
                               donor.layer2[1].se_layer.conv2.conv.weight)
    torch.testing.assert_close(model.layer2[1].bn3.weight, donor.layer2[1].bn3.weight)


def test_se_width_mismatch_lists_every_layer():
    src = timm.create_model('seresnet18')  # timm rounds SE widths to multiples of 8
    with pytest.raises(ConversionError) as err:
        convert(src.state_dict(), 'timm')
    message = str(err.value)
    assert 'backbone.layer2.0.se_layer.conv1.conv.weight: (8, 128, 1, 1) in the source, ' \
           '(16, 128, 1, 1) in the model' in message
    assert 'backbone.layer4.1.se_layer.conv2.conv.weight' in message


def test_legacy_basic_block_is_refused():
    with pytest.raises(ConversionError, match=r'timm-legacy SE-ResNet-18 cannot be reproduced'
                                              r': its BasicBlock applies a ReLU'):
        convert(timm.create_model('legacy_seresnet18').state_dict(), 'timm-legacy')


def test_unmatched_and_missing_keys_are_reported():
    state = timm.create_model('seresnet50').state_dict()
    state['extra.weight'] = torch.zeros(1)
    del state['layer3.2.bn2.bias']
    with pytest.raises(ConversionError) as err:
        convert(state, 'timm')
    assert 'no place in the model for: backbone.extra.weight' in str(err.value)
    assert 'not in the source: backbone.layer3.2.bn2.bias' in str(err.value)


def test_unknown_source_and_empty_checkpoint():
    with pytest.raises(ConversionError, match=r"unknown source 'keras'; expected one of"):
        convert({'a': torch.zeros(1)}, 'keras')
    with pytest.raises(ConversionError, match='holds no tensors'):
        convert({'meta': {}}, 'timm')


def test_bad_files_get_clear_errors(tmp_path):
    good = tmp_path / 'good.pth'
    torch.save({'w': torch.ones(3)}, good)
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(good.read_bytes()[:100])
    text = tmp_path / 'notes.pth'
    text.write_text('not a checkpoint')
    with pytest.raises(ValueError, match=r"truncated.pth' is truncated or damaged"):
        load_file(str(truncated))
    with pytest.raises(ValueError, match=r"notes.pth' is not a PyTorch checkpoint"):
        load_file(str(text))
    with pytest.raises(FileNotFoundError, match=r"checkpoint file '\S*missing.pth' does not"):
        load_file(str(tmp_path / 'missing.pth'))


def test_cli_writes_a_strictly_loadable_checkpoint(tmp_path):
    src = randomise(timm.create_model('legacy_seresnet50'))
    torch.save(src.state_dict(), tmp_path / 'se_resnet50.pth')
    result = subprocess.run(
        [sys.executable, 'tools/convert_weights.py', str(tmp_path / 'se_resnet50.pth'),
         str(tmp_path / 'out.pth'), '--source', 'cadene'],
        capture_output=True, text=True, check=True)
    assert "'style': 'caffe'" in result.stdout and "prefix='backbone.'" in result.stdout
    saved = load_file(str(tmp_path / 'out.pth'))
    model = classifier(saved['meta']['backbone'])
    model.load_state_dict(saved['state_dict'], strict=True)


def test_torchvision_resnext_becomes_se_resnext():
    src = randomise(torchvision.models.resnext50_32x4d())
    state, backbone = convert(src.state_dict(), 'torchvision')
    assert backbone == dict(type='SEResNeXt', depth=50, groups=32, base_width=4)
    model = classifier(backbone)
    model.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x, mode='tensor'), src(x), rtol=0, atol=1e-6)


def test_init_cfg_from_an_mmpretrain_resnet_classifier(tmp_path):
    plain = classifier(dict(type='ResNet', depth=50))
    for p in plain.parameters():
        p.data.add_(torch.randn_like(p) * 0.01)
    path = tmp_path / 'resnet50_in1k.pth'
    torch.save({'state_dict': plain.state_dict(), 'meta': {}}, path)
    model = SEResNet(50, init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                       prefix='backbone.'))
    model.init_weights()
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[-1], plain.backbone(x)[-1], rtol=0, atol=1e-6)
