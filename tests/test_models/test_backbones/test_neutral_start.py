"""One rule for starting SE from plain weights: whatever loads a state dict with a block's
trunk but not its SE layer, that SE layer starts neutral (once) and the log lists it; SE
weights in the state dict are never touched; init_weights() again changes nothing."""
import logging

import pytest
import torch
import torch.nn.functional as F
from mmdet.models.backbones import ResNet
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from mmengine.runner import load_checkpoint
from torch import nn
from toy import randomise_norms

from seplugin.models import SE_POSITIONS, SEResNet
from seplugin.models.layers.se_layer import CONSTANT_GATE_BIAS

NARROW = dict(base_channels=8, se_ratio=4)


def give_conv1_a_bias(model: nn.Module) -> None:
    """A biased first conv in every block (mmdet builds it bias-free), for 'pre'."""
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in layer:
            old = block.conv1
            block.conv1 = nn.Conv2d(old.in_channels, old.out_channels, old.kernel_size,
                                    old.stride, old.padding, bias=True)


def plain_and_se(position, depth=50, biased=False, **kwargs):
    plain = randomise_norms(ResNet(depth, base_channels=8, **kwargs))
    se = SEResNet(depth, se_position=position, **NARROW, **kwargs)
    if biased:
        torch.manual_seed(2)
        give_conv1_a_bias(plain)
        give_conv1_a_bias(se)
    plain.eval()  # mmdet's train() returns None
    return plain, se


def outputs(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


@pytest.fixture
def log_lines():
    """The lines seplugin logs through mmengine's current logger."""
    logger = MMLogger.get_current_instance()
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


# placements where a layer absorbs the constant gate: the SE network is the plain one
EXACT = [('standard', {}), ('3x3', {}), ('pre', dict(biased=True))]


@pytest.mark.parametrize('position,kwargs', EXACT, ids=[p for p, _ in EXACT])
def test_load_state_dict_starts_se_neutral_exactly(position, kwargs, log_lines):
    plain, se = plain_and_se(position, **kwargs)
    keys = se.load_state_dict(plain.state_dict(), strict=False)
    assert keys.missing_keys and all('.se_layer.' in k for k in keys.missing_keys)
    assert not keys.unexpected_keys
    x = torch.randn(2, 3, 64, 64)
    for a, b in zip(outputs(se, x), outputs(plain, x)):
        torch.testing.assert_close(a, b)
    assert '16 SE layers are not in the loaded state dict' in '\n'.join(log_lines)
    assert sum('.se_layer: gate 0.5, divided out of' in line
               for line in '\n'.join(log_lines).splitlines()) == 16
    if position == 'pre':  # only the weight takes the gate: conv(g * x) keeps its bias
        for p_block, s_block in zip(plain.layer2, se.layer2):
            torch.testing.assert_close(s_block.conv1.bias, p_block.conv1.bias, rtol=0, atol=0)
            torch.testing.assert_close(s_block.conv1.weight, p_block.conv1.weight * 2,
                                       rtol=0, atol=0)


def test_identity_placement(log_lines):
    """'identity': the shortcut's BN absorbs the gate where there is one (first block of a
    stage); on a plain shortcut the gate starts at sigmoid(10)."""
    plain, se = plain_and_se('identity')
    se.load_state_dict(plain.state_dict(), strict=False)
    one = torch.sigmoid(torch.tensor(CONSTANT_GATE_BIAS['one']['sigmoid'])).item()
    x = torch.randn(2, 32, 8, 8)
    se.eval()
    with torch.no_grad():
        for p_block, s_block in zip(plain.layer2, se.layer2):
            identity = x if p_block.downsample is None else p_block.downsample(x)
            gate = 1.0 if p_block.downsample is not None else one
            branch = p_block.bn3(p_block.conv3(F.relu(p_block.bn2(p_block.conv2(
                F.relu(p_block.bn1(p_block.conv1(x))))))))
            torch.testing.assert_close(s_block(x), F.relu(branch + gate * identity))
            x = p_block(x)
    text = '\n'.join(log_lines)
    assert 'layer2.0.se_layer: gate 0.5, divided out of BatchNorm2d' in text
    assert f'layer2.1.se_layer: gate {one:.6f} (nothing to absorb it)' in text


def test_post_placement():
    """'post': nothing can absorb the gate; it starts at sigmoid(10) = 1 - 4.5e-5."""
    plain, se = plain_and_se('post')
    se.load_state_dict(plain.state_dict(), strict=False)
    one = torch.sigmoid(torch.tensor(CONSTANT_GATE_BIAS['one']['sigmoid']))
    x = torch.randn(2, 64, 8, 8)
    se.eval()
    with torch.no_grad():
        for s_block, p_block in zip(se.layer3, plain.layer3):
            torch.testing.assert_close(s_block(x), p_block(x) * one)
            x = p_block(x)


@pytest.mark.parametrize('position', SE_POSITIONS[:1] + ('pre',))
def test_basic_blocks(position):
    plain, se = plain_and_se(position, depth=18)
    se.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(2, 3, 64, 64)
    for a, b in zip(outputs(se, x), outputs(plain, x)):
        torch.testing.assert_close(a, b)


def test_se_weights_in_the_state_dict_are_never_touched():
    donor = randomise_norms(SEResNet(50, **NARROW))
    for p in donor.parameters():
        p.data.normal_(0, 0.1)
    model = SEResNet(50, **NARROW)
    model.load_state_dict(donor.state_dict(), strict=True)
    for key, value in donor.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)
    # a plain state dict for some blocks only: only those blocks start neutral
    partial = {k: v for k, v in donor.state_dict().items()
               if not k.startswith('layer4.1.se_layer.')}
    model.load_state_dict(partial, strict=False)
    for name, block in model.named_blocks():
        expected_bn3 = donor.get_submodule(name).bn3.weight
        expected_bn3 = expected_bn3 * 2 if name == 'layer4.1' else expected_bn3
        torch.testing.assert_close(block.bn3.weight, expected_bn3, rtol=0, atol=0)


def test_every_loader_and_init_weights_again(tmp_path):
    """init_cfg Pretrained (with a prefix, as from a classifier), mmengine's
    load_checkpoint (what load_from uses), then init_weights() again: same function."""
    plain, _ = plain_and_se('standard')
    path = tmp_path / 'classifier.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in plain.state_dict().items()}},
               path)
    x = torch.randn(2, 3, 64, 64)
    expected = outputs(plain, x)

    model = SEResNet(50, **NARROW, init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                                 prefix='backbone.'))
    model.init_weights()
    for a, b in zip(outputs(model, x), expected):
        torch.testing.assert_close(a, b)
    model.init_weights()  # mmengine warns and leaves the weights; so does seplugin
    for a, b in zip(outputs(model, x), expected):
        torch.testing.assert_close(a, b)

    model = SEResNet(50, **NARROW)
    model.init_weights()
    wrapper = nn.Module()
    wrapper.backbone = model
    load_checkpoint(wrapper, str(path), map_location='cpu')
    load_checkpoint(wrapper, str(path), map_location='cpu')  # a reload restarts, not doubles
    for a, b in zip(outputs(model, x), expected):
        torch.testing.assert_close(a, b)


def test_frozen_stages_keep_the_plain_function_while_the_rest_learns():
    """A frozen stage's neutral SE layers stay constant gates divided out of their BN: the
    frozen stages compute exactly the plain network's stages, for the whole training, and
    cost SE's compute without its function. Unfrozen SE layers learn from the first step."""
    plain, se = plain_and_se('standard', frozen_stages=2)
    se.load_state_dict(plain.state_dict(), strict=False)
    frozen = {k: v.clone() for k, v in se.state_dict().items()
              if k.startswith(('conv1', 'bn1', 'layer1', 'layer2'))}
    assert all(not p.requires_grad for n, p in se.named_parameters()
               if n.startswith(('layer1', 'layer2')))
    optimizer = torch.optim.SGD([p for p in se.parameters() if p.requires_grad], lr=0.1)
    se.train()
    optimizer.zero_grad()
    se(torch.randn(2, 3, 64, 64))[-1].square().mean().backward()
    optimizer.step()
    for key, value in frozen.items():
        torch.testing.assert_close(se.state_dict()[key], value, rtol=0, atol=0)
    assert se.layer3[0].se_layer.conv2.conv.weight.abs().sum() > 0  # learnt
    se.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(se(x)[1], plain(x)[1])


def test_faster_rcnn_from_a_plain_detector_checkpoint(tmp_path):
    """MMDetection's Faster R-CNN with SEResNet, from a plain Faster R-CNN checkpoint
    through a detector-level init_cfg and through load_checkpoint (what load_from runs):
    the same FPN features and RoI head outputs (on the RPN's proposals) as the plain one."""
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    from mmengine.hub import get_config

    cfg = get_config('mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py').model
    cfg.backbone.init_cfg = None  # no download; the checkpoint below holds the backbone
    with DefaultScope.overwrite_default_scope('mmdet'):
        plain = MODELS.build(cfg)  # torch's default init, BNs randomised
        randomise_norms(plain.backbone)
        path = tmp_path / 'faster_rcnn_r50.pth'
        torch.save({'state_dict': plain.state_dict(), 'meta': {}}, path)
        cfg.backbone.type = 'SEResNet'
        by_init_cfg = MODELS.build(dict(cfg, init_cfg=dict(type='Pretrained',
                                                           checkpoint=str(path))))
        by_init_cfg.init_weights()
        by_load = MODELS.build(cfg)
        load_checkpoint(by_load, str(path), map_location='cpu')
        data = plain.data_preprocessor(demo_mm_inputs(1, [[3, 96, 128]]), False)
    results = []
    for model in (plain, by_init_cfg, by_load):
        model.eval()
        with torch.no_grad():
            results.append((model.extract_feat(data['inputs']),  # FPN levels
                            model(data['inputs'], data['data_samples'], mode='tensor')))
    assert isinstance(by_load.backbone, SEResNet)
    flat = [torch.utils._pytree.tree_flatten(r)[0] for r in results]
    assert len(flat[0]) == 5 + 2  # FPN levels, RoI head scores and boxes
    for se_outputs in flat[1:]:
        assert len(se_outputs) == len(flat[0])
        for a, b in zip(se_outputs, flat[0]):
            torch.testing.assert_close(a, b)


def test_runner_load_from_a_plain_mmpretrain_classifier(tmp_path):
    """``load_from=`` in a Runner: MMPretrain's ResNet classifier checkpoint into the same
    classifier with the mmpretrain scope's SEResNet gives MMPretrain's logits."""
    from mmengine.runner import Runner
    from mmpretrain.registry import MODELS

    def classifier(backbone_type):
        return dict(type='ImageClassifier',
                    backbone=dict(type=backbone_type, depth=50, base_channels=16),
                    neck=dict(type='GlobalAveragePooling'),
                    head=dict(type='LinearClsHead', num_classes=10, in_channels=512))

    with DefaultScope.overwrite_default_scope('mmpretrain'):
        plain = MODELS.build(classifier('ResNet'))
    randomise_norms(plain.backbone)
    path = tmp_path / 'resnet50_classifier.pth'
    torch.save({'state_dict': plain.state_dict(), 'meta': {}}, path)
    runner = Runner(model=classifier('SEResNet'), work_dir=str(tmp_path / 'work'),
                    load_from=str(path), default_scope='mmpretrain')
    runner.load_or_resume()
    se = runner.model
    assert len(list(se.backbone.se_layers())) == 16
    x = torch.randn(2, 3, 64, 64)
    plain.eval()
    se.eval()
    with torch.no_grad():
        torch.testing.assert_close(se(x, mode='tensor'), plain(x, mode='tensor'))
