"""Weight conversion from timm, Cadene/legacy timm, mmpretrain and torchvision layouts."""
import subprocess
import sys
from collections import OrderedDict

import pytest
import timm
import torch
import torchvision
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS

from seplugin.checkpoint import load_file
from seplugin.converters import ConversionError, convert
from seplugin.models import MMPretrainSEResNet, SEResNet


def randomise(model, gain=(0.5, 1.5), size=48):
    """Non-trivial BN affine parameters, then realistic BN statistics: the running mean and
    variance are the statistics of the model's own activations on random images (as after
    training), so that eval-mode outputs have a sane scale and per-element tolerances mean
    something."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.weight.data.uniform_(*gain)
        m.bias.data.normal_(0, 0.1)
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, size, size))
    for m in bns:
        m.momentum = 0.1
    return model.eval()


def float64(*models, shape=(2, 3, 64, 64)):
    """The models in float64 and an input for them: seplugin's SE tail rounds once (a fused
    multiply-add) where timm's rounds twice, and a deep network amplifies float32 rounding
    to 1e-3; in float64 the same functions agree to 1e-9."""
    for model in models:
        model.double()
    return torch.randn(*shape, dtype=torch.float64)


def assert_same_outputs(actual, expected):
    """Equal per element (float64 outputs of a realistic scale)."""
    assert actual.dtype == expected.dtype == torch.float64
    assert expected.abs().max() < 1000, 'outputs of an unrealistic scale'
    torch.testing.assert_close(actual, expected, rtol=1e-7, atol=1e-7)


def classifier(backbone, num_classes=1000):
    # in the mmpretrain scope whatever scope an earlier test's runner left current
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(dict(
            type='ImageClassifier', backbone=dict(backbone, out_indices=(3,)),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=num_classes,
                      in_channels=2048 if backbone['depth'] >= 50 else 512))).eval()


def without_num_batches_tracked(state):
    return OrderedDict((k, v) for k, v in state.items()
                       if not k.endswith('num_batches_tracked'))


# State dicts shaped as the published files are: their keys, wrappers and dtypes.
def cadene_2017(name):
    """Cadene's pretrainedmodels files (se_resnet50-ce0d4300.pth, 2017): a bare state dict
    of float32 tensors, saved before PyTorch 0.4.1, so without num_batches_tracked; timm's
    legacy models have exactly Cadene's module names."""
    return without_num_batches_tracked(randomise(timm.create_model(name)).state_dict())


def torchvision_2017(model):
    """torchvision's first ResNet files (resnet50-19c8e357.pth): bare, no counters."""
    return without_num_batches_tracked(randomise(model).state_dict())


def imagenet_example(state):
    """PyTorch's ImageNet example script: DataParallel keys under state_dict, plus epoch,
    arch, best_acc1 and the optimizer state."""
    return {'epoch': 90, 'arch': 'resnet50', 'best_acc1': torch.tensor(76.1),
            'state_dict': OrderedDict((f'module.{k}', v) for k, v in state.items()),
            'optimizer': {'state': {}, 'param_groups': [{'lr': 0.0001}]}}


@pytest.mark.parametrize('name,source,expected', [
    ('seresnet50', 'timm', dict(type='SEResNet', depth=50, se_ratio=16, se_cfg=dict(divisor=1))),
    ('legacy_seresnet50', 'timm-legacy',
     dict(type='SEResNet', depth=50, style='caffe', stem_pool='ceil', se_ratio=16,
          se_cfg=dict(divisor=1))),
    ('legacy_seresnext50_32x4d', 'cadene',
     dict(type='SEResNeXt', depth=50, groups=32, base_width=4, stem_pool='ceil', se_ratio=16,
          se_cfg=dict(divisor=1))),
])
def test_converted_model_gives_the_source_outputs(name, source, expected):
    src = randomise(timm.create_model(name))
    published = src.state_dict() if source == 'timm' else \
        without_num_batches_tracked(src.state_dict())  # the legacy files are Cadene's
    state, backbone = convert(published, source)
    assert backbone == expected
    model = classifier(backbone)
    model.load_state_dict(state, strict=True)
    x = float64(model, src, shape=(2, 3, 97, 97))  # odd size: the stem pooling must match
    with torch.no_grad():
        assert_same_outputs(model(x, mode='tensor'), src(x))


def test_timm_deep_stem_variant():
    src = randomise(timm.create_model('seresnet152d'), gain=(0.2, 0.6))
    state, backbone = convert(src.state_dict(), 'timm', backbone_only=True)
    assert backbone == dict(type='SEResNet', depth=152, deep_stem=True, stem_channels=64,
                            avg_down=True, se_ratio=16, se_cfg=dict(divisor=1))
    # the mmpretrain scope's class, whose deep stem and shortcut keys the converter writes
    model = MMPretrainSEResNet(**{k: v for k, v in backbone.items() if k != 'type'}).eval()
    model.load_state_dict(state, strict=True)
    x = float64(model, src, shape=(1, 3, 64, 64))
    with torch.no_grad():
        assert_same_outputs(model(x)[-1], src.forward_features(x))


def test_mmpretrain_checkpoint_needs_no_conversion():
    model = classifier(dict(type='SEResNet', depth=50))
    original = model.state_dict()
    state, backbone = convert({'state_dict': original, 'meta': {}}, 'mmpretrain')
    assert backbone == dict(type='SEResNet', depth=50, se_ratio=16, se_cfg=dict(divisor=1))
    assert list(state) == list(original)
    assert all(torch.equal(state[k], original[k]) for k in original)


def test_torchvision_resnet_becomes_se_resnet_with_the_same_logits():
    """SE layers start neutral: the converted SE-ResNet-50 computes the plain network."""
    src = randomise(torchvision.models.resnet50())
    state, backbone = convert(src.state_dict(), 'torchvision')
    assert backbone == dict(type='SEResNet', depth=50)
    model = classifier(backbone)
    model.load_state_dict(state, strict=True)
    x = float64(model, src)
    with torch.no_grad():
        # the constant gate 0.5 is divided out of the preceding BN, both powers of 2
        assert_same_outputs(model(x, mode='tensor'), src(x))


def test_init_cfg_from_plain_resnet_starts_neutral(tmp_path, caplog):
    src = randomise(torchvision.models.resnet50())
    path = tmp_path / 'resnet50.pth'
    torch.save(src.state_dict(), path)
    model = SEResNet(50, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    model.eval()
    x = float64(model, src)
    with torch.no_grad():
        plain = src.layer4(src.layer3(src.layer2(src.layer1(src.maxpool(src.relu(
            src.bn1(src.conv1(x))))))))
        assert_same_outputs(model(x)[-1], plain)
    gate = model.layer1[0].se_layer.gate(torch.randn(1, 256, 4, 4, dtype=torch.float64))
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


@pytest.mark.parametrize('name', ['seresnet18', 'seresnet34'])
def test_timm_basic_block_widths_need_and_get_timms_rounding(name):
    """timm rounds squeeze widths to multiples of 8 (8, 8, 16, 32 at depth 18/34): the
    converter finds the rule and returns it as se_cfg; a config with that se_cfg loads the
    file and computes timm's outputs."""
    src = randomise(timm.create_model(name))
    state, backbone = convert(src.state_dict(), 'timm', backbone_only=True)
    assert backbone == dict(type='SEResNet', depth=int(name[8:]), se_ratio=16,
                            se_cfg=dict(divisor=8, min_ratio=0))
    widths = [state[f'layer{i}.0.se_layer.conv1.conv.weight'].shape[0] for i in (1, 2, 3, 4)]
    assert widths == [src.get_submodule(f'layer{i}.0.se.fc1').out_channels
                      for i in (1, 2, 3, 4)] == [8, 8, 16, 32]
    model = SEResNet(**{k: v for k, v in backbone.items() if k != 'type'}).eval()
    model.load_state_dict(state, strict=True)
    x = float64(model, src)
    with torch.no_grad():
        assert_same_outputs(model(x)[-1], src.forward_features(x))
    # without the rule the shapes differ, and the error says so in a few lines
    with pytest.raises(RuntimeError, match=r'size mismatch for layer1.0.se_layer'):
        SEResNet(int(name[8:])).load_state_dict(state)


@pytest.mark.parametrize('name', ['seresnet50', 'seresnext50_32x4d', 'seresnext101_32x4d',
                                  'seresnext101_32x8d', 'seresnext101_64x4d',
                                  'seresnext101d_32x8d', 'seresnet152d', 'seresnet18',
                                  'seresnet34'])
def test_every_timm_se_resnet_layout_converts(name):
    """Keys and shapes of each timm SE-ResNet with published weights (and 18/34)."""
    with torch.device('meta'):
        published = timm.create_model(name).state_dict()
    state, backbone = convert(
        {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in published.items()}, 'timm')
    model = classifier(backbone)
    assert {k: v.shape for k, v in model.state_dict().items()} == \
        {k: v.shape for k, v in state.items()}


@pytest.mark.parametrize('name, why', [
    ('seresnext26d_32x4d', r'blocks per stage \(2, 2, 2, 2\) \(Bottleneck\) match no ResNet'),
    ('seresnet50t', r"deep stem widths \[24, 32, 64\] cannot be reproduced"),
])
def test_timm_layouts_without_an_mmdet_resnet_are_refused(name, why):
    with torch.device('meta'):
        published = timm.create_model(name).state_dict()
    with pytest.raises(ConversionError, match=why):
        convert({k: torch.zeros(v.shape, dtype=v.dtype) for k, v in published.items()},
                'timm')


def test_cadene_2017_file_without_num_batches_tracked():
    """53 BN layers without counters: filled with what torch's own loading puts there."""
    published = cadene_2017('legacy_seresnet50')
    assert all(v.dtype == torch.float32 for v in published.values())
    notes = []
    state, backbone = convert(published, 'cadene', notes=notes)
    assert notes[0].startswith('53 BN layers had no num_batches_tracked')
    reference = timm.create_model('legacy_seresnet50')
    reference.load_state_dict(published, strict=True)  # torch accepts their absence
    counters = {k: v for k, v in reference.state_dict().items()
                if k.endswith('num_batches_tracked')}
    assert len(counters) == 53
    converted = {k: v for k, v in state.items() if k.endswith('num_batches_tracked')}
    assert len(converted) == 53
    # what torch put there: a 0-dim int64 zero
    assert {(v.dtype, v.shape, v.item()) for v in counters.values()} == \
        {(v.dtype, v.shape, v.item()) for v in converted.values()} == \
        {(torch.long, torch.Size([]), 0)}
    classifier(backbone).load_state_dict(state, strict=True)


def test_torchvision_2017_file_in_a_dataparallel_checkpoint():
    src = torchvision.models.resnet50()
    published = imagenet_example(torchvision_2017(src))
    notes = []
    state, backbone = convert(published, 'torchvision', notes=notes)
    assert notes == ["53 BN layers had no num_batches_tracked (a file saved before PyTorch "
                     "0.4.1): set to 0, as torch's BatchNorm loading does",
                     '16 SE layers are not in the source (a plain ResNet): they start '
                     'neutral']
    model = classifier(backbone)
    model.load_state_dict(state, strict=True)
    x = float64(model, src)
    with torch.no_grad():
        assert_same_outputs(model(x, mode='tensor'), src(x))


def test_mmpretrain_2020_checkpoint():
    """MMPretrain's published files: meta plus backbone./head.fc. keys with counters."""
    source = classifier(dict(type='SEResNet', depth=50))
    published = {'meta': {'mmcls_version': '0.12.0', 'CLASSES': ['a']},
                 'state_dict': OrderedDict(source.state_dict())}
    state, backbone = convert(published, 'mmpretrain')
    assert backbone == dict(type='SEResNet', depth=50, se_ratio=16, se_cfg=dict(divisor=1))
    assert all(torch.equal(state[k], v) for k, v in published['state_dict'].items())


def test_wrong_source_gets_a_summary_and_the_likely_source():
    published = cadene_2017('legacy_seresnet50')
    with pytest.raises(ConversionError) as err:
        convert(published, 'timm')
    message = str(err.value)
    lines = message.splitlines()
    assert len(lines) == 4, message  # a summary, not one line per tensor
    assert lines[0].startswith(f'timm checkpoint ({len(published)} tensors) does not '
                               'convert to')
    # the stem (conv1, bn1 with its counter: 6) and the SE layers (16 x 4); no head:
    # timm's would be fc
    assert lines[1].startswith('  70 keys of the model are not in the source: '
                               'backbone.bn1.bias, ')
    assert lines[1].endswith('... (65 more)')
    # layer0.{conv1,bn1} (5), se_module (64), last_linear (2)
    assert lines[2].startswith('  71 keys of the source have no place in the model: '
                               'backbone.last_linear.bias, backbone.last_linear.weight, '
                               'backbone.layer0.bn1.bias')
    assert lines[3] == 'its keys look like --source cadene (or timm-legacy)'


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
    assert ('1 keys of the model are not in the source: backbone.layer3.2.bn2.bias'
            in str(err.value))
    assert '1 keys of the source have no place in the model: backbone.extra.weight' \
        in str(err.value)
    assert 'look like' not in str(err.value)


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
    torch.save(cadene_2017('legacy_seresnet50'), tmp_path / 'se_resnet50-ce0d4300.pth')
    result = subprocess.run(
        [sys.executable, 'tools/convert_weights.py', str(tmp_path / 'se_resnet50-ce0d4300.pth'),
         str(tmp_path / 'out.pth'), '--source', 'cadene'],
        capture_output=True, text=True, check=True)
    assert "'style': 'caffe'" in result.stdout and "prefix='backbone.'" in result.stdout
    assert 'note: 53 BN layers had no num_batches_tracked' in result.stdout
    saved = load_file(str(tmp_path / 'out.pth'))
    model = classifier(saved['meta']['backbone'])
    model.load_state_dict(saved['state_dict'], strict=True)


def test_cli_reads_timms_safetensors_and_prints_the_se_cfg(tmp_path):
    """timm's hub files are model.safetensors: the model's keys, counters included."""
    from safetensors.torch import save_file
    src = randomise(timm.create_model('seresnet18'))
    save_file(src.state_dict(), str(tmp_path / 'model.safetensors'))
    result = subprocess.run(
        [sys.executable, 'tools/convert_weights.py', str(tmp_path / 'model.safetensors'),
         str(tmp_path / 'out.pth'), '--source', 'timm', '--backbone-only'],
        capture_output=True, text=True, check=True)
    assert "'se_cfg': {'divisor': 8, 'min_ratio': 0}" in result.stdout
    saved = load_file(str(tmp_path / 'out.pth'))
    model = SEResNet(**{k: v for k, v in saved['meta']['backbone'].items() if k != 'type'})
    model.load_state_dict(saved['state_dict'], strict=True)


def test_cli_errors_are_short_and_refuse_timms_aa_models(tmp_path):
    torch.save(cadene_2017('legacy_seresnet50'), tmp_path / 'se.pth')
    result = subprocess.run(
        [sys.executable, 'tools/convert_weights.py', str(tmp_path / 'se.pth'),
         str(tmp_path / 'out.pth'), '--source', 'timm'], capture_output=True, text=True)
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 4
    assert 'look like --source cadene' in result.stderr
    aa = tmp_path / 'seresnextaa101d_32x8d.pth'
    aa.write_bytes(b'')
    result = subprocess.run(
        [sys.executable, 'tools/convert_weights.py', str(aa), str(tmp_path / 'out.pth'),
         '--source', 'timm'], capture_output=True, text=True)
    assert result.returncode == 2 and 'anti-aliased' in result.stderr


def test_torchvision_resnext_becomes_se_resnext():
    src = randomise(torchvision.models.resnext50_32x4d())
    state, backbone = convert(src.state_dict(), 'torchvision')
    assert backbone == dict(type='SEResNeXt', depth=50, groups=32, base_width=4)
    model = classifier(backbone)
    model.load_state_dict(state, strict=True)
    x = float64(model, src, shape=(1, 3, 64, 64))
    with torch.no_grad():
        assert_same_outputs(model(x, mode='tensor'), src(x))


def test_init_cfg_from_an_mmpretrain_resnet_classifier(tmp_path):
    plain = randomise(classifier(dict(type='ResNet', depth=50)))
    path = tmp_path / 'resnet50_in1k.pth'
    torch.save({'state_dict': plain.state_dict(), 'meta': {}}, path)
    model = SEResNet(50, init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                       prefix='backbone.'))
    model.init_weights()
    model.eval()
    x = float64(model, plain, shape=(1, 3, 64, 64))
    with torch.no_grad():
        assert_same_outputs(model(x)[-1], plain.backbone(x)[-1])
