import subprocess
import sys

import pytest
import torch
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS

from seplugin.analysis.excitation import ExcitationRecorder, plot_excitations

PNG = b'\x89PNG\r\n\x1a\n'


def tiny_classifier():
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return build(dict(
        type='ImageClassifier',
        backbone=dict(type='SEResNet', depth=18, base_channels=8, stem_channels=8,
                      se_ratio=4, out_indices=(3,)),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=64)))


def build(cfg):
    return MODELS.build(cfg).eval()


def test_recorder_averages_the_gates_per_class():
    model = tiny_classifier()
    x = torch.randn(4, 3, 32, 32)
    labels = [0, 1, 0, 2]
    with ExcitationRecorder(model.backbone) as recorder, torch.no_grad():
        model(x, mode='tensor')
        recorder.add(labels)
    # the expected gates, computed directly: run the backbone up to layer2.1's input
    with torch.no_grad():
        b = model.backbone
        feats = b.layer1(b.maxpool(b.relu(b.norm1(b.conv1(x)))))
        block = b.layer2[0]
        inner = b.layer2[1]
        out = block(feats)
        branch = inner.norm2(inner.conv2(inner.relu(inner.norm1(inner.conv1(out)))))
        gates = inner.se_layer.gate(branch).flatten(1)
    means = recorder.means()
    assert list(means) == [name for name, _ in model.backbone.se_layers()]
    torch.testing.assert_close(means['layer2.1.se_layer'][0], gates[[0, 2]].mean(0))
    torch.testing.assert_close(means['layer2.1.se_layer'][2], gates[3])
    assert recorder.counts == {0: 2, 1: 1, 2: 1}
    # hooks are gone after the with-block
    assert not model.backbone.layer2[1].se_layer.conv2._forward_hooks


def test_recorder_needs_se_layers():
    from mmdet.models.backbones import ResNet
    with pytest.raises(TypeError, match='ResNet has no SE layers to record'):
        ExcitationRecorder(ResNet(18))


def test_plot_writes_a_png(tmp_path):
    means = {'layer1.0.se_layer': {0: torch.rand(8), 1: torch.rand(8)},
             'layer4.0.se_layer': {0: torch.rand(16), 1: torch.rand(16)}}
    plot_excitations(means, {0: 'tench, Tinca tinca', 1: 'goldfish'}, str(tmp_path / 'e.png'))
    assert (tmp_path / 'e.png').read_bytes()[:8] == PNG


def test_tool_on_the_mini_imagenet_config(tmp_path):
    from seplugin.datasets.mini_cls import make_mini_imagenet
    data = tmp_path / 'mini_imagenet'
    make_mini_imagenet(str(data))
    config = 'configs/mini/seresnet18_mini_imagenet.py'
    from mmengine.config import Config
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(Config.fromfile(config).model)  # untrained: tests the plumbing
    torch.save({'state_dict': model.state_dict()}, tmp_path / 'model.pth')
    result = subprocess.run(
        [sys.executable, 'tools/analyze_excitation.py', config, str(tmp_path / 'model.pth'),
         '--classes', '0', '3', '--num-images', '5', '--out-dir', str(tmp_path / 'out'),
         '--cfg-options', f'test_dataloader.dataset.data_root={data}'],
        capture_output=True, text=True, check=True)
    assert 'images per class: {0: 5, 3: 5}' in result.stdout
    assert (tmp_path / 'out' / 'excitation.png').read_bytes()[:8] == PNG
    saved = torch.load(tmp_path / 'out' / 'excitation.pt', weights_only=True)
    assert set(saved['means']['layer4.1.se_layer']) == {0, 3}
