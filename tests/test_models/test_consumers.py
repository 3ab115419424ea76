"""Tools that look inside a model see SE-ResNet as they see mmdet's ResNet with an SE plugin:
hooks, torch.fx, torchvision's feature extraction, ONNX export, FX graph-mode QAT and
torch.compile (inductor). Each compares numbers with eager PyTorch or mmdet's ResNet."""
import copy

import pytest
import torch
from mmdet.models.backbones import ResNet
from mmengine.registry import DefaultScope
from torch import nn
from toy import randomise_norms

from seplugin.models import SEResNet, SEResNeXt

HOOKED = ['norm3', 'se_layer', 'se_layer.conv1', 'se_layer.conv1.conv',
          'se_layer.conv1.activate', 'se_layer.conv2', 'se_layer.conv2.conv',
          'se_layer.conv2.activate']


def se_resnet50(**kwargs) -> nn.Module:
    torch.manual_seed(0)
    return randomise_norms(SEResNet(50, norm_eval=False, **kwargs))


def mmdet_se_resnet50(model: nn.Module) -> nn.Module:
    """mmdet's ResNet-50 with an SELayer plugin after conv3, holding ``model``'s weights."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        ref = ResNet(50, norm_eval=False, out_indices=model.out_indices,
                     plugins=[dict(cfg=dict(type='SELayer'), position='after_conv3')])
    ref.load_state_dict(model.state_dict())
    return ref


def record(model: nn.Module, block: str) -> dict:
    """Forward hooks on the block's last norm, SE layer and its convs; outputs by name."""
    seen = {}
    for name in HOOKED:
        model.get_submodule(f'{block}.{name}').register_forward_hook(
            lambda m, args, out, name=name: seen.setdefault(name, []).append(out.clone()))
    return seen


@pytest.mark.parametrize('train', [True, False], ids=['train', 'eval'])
def test_forward_hooks_fire_as_on_mmdet_resnet(train):
    model = se_resnet50(out_indices=(0,))
    ref = mmdet_se_resnet50(model)
    image = torch.randn(2, 3, 64, 64)
    outputs, records = [], []
    for m in (model, ref):
        seen = record(m, 'layer1.1')
        m.train(train)  # mmdet's ResNet.train returns None
        outputs.append(m(image)[0])
        records.append(seen)
    assert set(records[0]) == set(HOOKED)
    for name in HOOKED:
        assert len(records[0][name]) == 1, name
        torch.testing.assert_close(records[0][name][0], records[1][name][0],
                                   rtol=1e-5, atol=1e-5, msg=name)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)
    # running statistics were updated once, as by mmdet's block
    torch.testing.assert_close(model.layer1[1].norm3.running_var,
                               ref.layer1[1].norm3.running_var)


def backbones():
    torch.manual_seed(0)
    return {'SE-ResNet-50': se_resnet50().eval(),
            'SE-ResNeXt-50': randomise_norms(SEResNeXt(50, norm_eval=False)).eval()}


@pytest.mark.parametrize('name', ['SE-ResNet-50', 'SE-ResNeXt-50'])
def test_fx_symbolic_trace_and_feature_extractor(name):
    from torchvision.models.feature_extraction import create_feature_extractor
    model = backbones()[name]
    image = torch.randn(1, 3, 64, 64)
    expected = model(image)
    traced = torch.fx.symbolic_trace(model)
    for a, b in zip(traced(image), expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    gate_node = 'layer2.1.se_layer.conv2.activate'
    gates = []
    model.layer2[1].se_layer.conv2.activate.register_forward_hook(
        lambda m, args, out: gates.append(out))
    model(image)
    extractor = create_feature_extractor(model, {gate_node: 'gate', 'layer3.5.relu_2': 'c4'})
    features = extractor(image)
    torch.testing.assert_close(features['gate'], gates[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(features['c4'], expected[2], rtol=1e-5, atol=1e-5)


def onnx_outputs(model: nn.Module, image: torch.Tensor, tmp_path) -> list:
    onnxruntime = pytest.importorskip('onnxruntime')
    path = str(tmp_path / 'model.onnx')
    torch.onnx.export(model, (image,), path)
    session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
    return session.run(None, {session.get_inputs()[0].name: image.numpy()})


def test_onnx_export_se_resnet50(tmp_path):
    model = se_resnet50().eval()
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(image)
    outputs = onnx_outputs(model, image, tmp_path)
    assert len(outputs) == len(expected)
    for a, b in zip(outputs, expected):
        torch.testing.assert_close(torch.from_numpy(a), b, rtol=1e-4, atol=1e-4)


class BackboneNeck(nn.Module):
    def __init__(self, detector):
        super().__init__()
        self.backbone, self.neck = detector.backbone, detector.neck

    def forward(self, x):
        return self.neck(self.backbone(x))


@pytest.mark.slow
def test_onnx_export_faster_rcnn_se_backbone_and_fpn(tmp_path):
    from seplugin.analysis.complexity import build_from_config
    detector = build_from_config('configs/faster_rcnn_se_r50_fpn_coco.py')[0]
    model = randomise_norms(BackboneNeck(detector)).eval()
    image = torch.randn(1, 3, 128, 160)
    with torch.no_grad():
        expected = model(image)
    outputs = onnx_outputs(model, image, tmp_path)
    assert len(outputs) == len(expected) == 5
    for a, b in zip(outputs, expected):
        torch.testing.assert_close(torch.from_numpy(a), b, rtol=1e-4, atol=1e-4)


def test_fx_graph_mode_qat_wraps_the_se_convs():
    from torch.ao.nn.intrinsic.qat import ConvReLU2d
    from torch.ao.nn.qat import Conv2d as QATConv2d
    from torch.ao.quantization import (
        disable_fake_quant,
        disable_observer,
        get_default_qat_qconfig_mapping,
    )
    from torch.ao.quantization.quantize_fx import prepare_qat_fx
    model = se_resnet50(base_channels=16).train()
    image = torch.randn(2, 3, 64, 64)
    prepared = prepare_qat_fx(copy.deepcopy(model), get_default_qat_qconfig_mapping('x86'),
                              example_inputs=(image,))
    modules = dict(prepared.named_modules())
    for name, _ in model.named_modules():
        if name.endswith('se_layer'):
            assert type(modules[f'{name}.conv1.conv']) is ConvReLU2d, name
            assert type(modules[f'{name}.conv2.conv']) is QATConv2d, name
    assert all(torch.isfinite(o).all() for o in prepared(image))  # fake-quantised
    # without fake quantisation the QAT graph computes what the float model computes
    prepared.apply(disable_fake_quant)
    prepared.apply(disable_observer)
    for a, b in zip(prepared(image), model(image)):  # conv-BN folding rounds differently
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)


@pytest.mark.slow  # compiling C++ takes minutes on 2 CPU cores without a warm cache
def test_torch_compile_inductor_equals_eager(tmp_path, monkeypatch):
    """The default backend (inductor, C++ code generated and compiled here) on inference."""
    monkeypatch.setenv('TORCHINDUCTOR_CACHE_DIR', str(tmp_path))  # no cache of other runs
    torch.manual_seed(0)
    model = randomise_norms(SEResNet(18, norm_eval=False, base_channels=8, se_ratio=4)).eval()
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(image)
        compiled = torch.compile(model)(image)
    for a, b in zip(compiled, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_torch_compile_inductor_training_equals_eager(tmp_path, monkeypatch):
    """float64: a BN over a 1x1 map of two images amplifies float32 rounding too much."""
    monkeypatch.setenv('TORCHINDUCTOR_CACHE_DIR', str(tmp_path))
    torch.manual_seed(0)
    model = randomise_norms(SEResNet(18, norm_eval=False, base_channels=8, se_ratio=4))
    model = model.double().train()
    compiled_model = copy.deepcopy(model)
    compiled = torch.compile(compiled_model)
    image = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    for forward in (model, compiled):
        forward(image)[-1].square().mean().backward()
    for p, q in zip(model.parameters(), compiled_model.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-7, atol=1e-10)
