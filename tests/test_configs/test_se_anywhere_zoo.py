"""SE anywhere against the upstream zoos: every mmdet and MMPretrain config whose backbone
or neck is of a kind SEBackbone/SENeck has a preset for gets SE with one config change,
builds, trains one step with a gradient in every SE layer, predicts, and, loading the plain
model's own (random, saved) weights, computes what the plain model computes.

``pytest -m slow tests/test_configs/test_se_anywhere_zoo.py`` walks every such config, one
test per distinct model; the default run covers a few kinds on tiny inputs, and seplugin's
own configs/se_anywhere/. A config that fails with SE is run again as shipped: only when
that fails with the same error is it an expected failure, with that error as the reason.
"""
import copy
import json
import traceback
from functools import cache, partial
from pathlib import Path

import mmdet
import mmpretrain
import pytest
import test_mmdet_zoo as mmdet_zoo
import torch
import yaml
from mmengine.config import Config, ConfigDict
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import DefaultScope

ROOT = Path(__file__).parents[2]
CONFIGS = {'mmdet': Path(mmdet.__file__).parent / '.mim' / 'configs',
           'mmpretrain': Path(mmpretrain.__file__).parent / '.mim' / 'configs'}
# Backbone kinds with an SEBackbone preset (plain ResNet is SEResNet: its own walks).
BACKBONES = {
    'mmdet': {'RegNet', 'ResNeXt', 'Res2Net', 'ResNeSt', 'ResNetV1d', 'HRNet', 'MobileNetV2',
              'CSPDarknet', 'CSPNeXt', 'Darknet', 'DetectoRS_ResNet', 'DetectoRS_ResNeXt'},
    'mmpretrain': {'RegNet', 'ResNeXt', 'Res2Net', 'ResNeSt', 'ResNetV1c', 'ResNetV1d',
                   'HRNet', 'MobileNetV2', 'ShuffleNetV1', 'ShuffleNetV2', 'VGG',
                   'InceptionV3', 'ConvNeXt', 'CSPDarkNet', 'CSPResNet', 'CSPResNeXt'},
}
NECKS = {'FPN', 'PAFPN', 'BFP', 'NASFPN', 'NASFCOS_FPN', 'HRFPN', 'ChannelMapper',
         'FPN_CARAFE', 'YOLOV3Neck', 'YOLOXPAFPN', 'CSPNeXtPAFPN', 'SSDNeck'}
FAST = [('mmpretrain', 'shufflenet_v2/shufflenet-v2-1x_16xb64_in1k.py'),
        ('mmpretrain', 'mobilenet_v2/mobilenet-v2_8xb32_in1k.py'),
        ('mmdet', 'yolox/yolox_tiny_8xb8-300e_coco.py')]
# SE after a module whose output no positive scale passes unchanged (Swish, GELU blocks,
# module outputs): the gate starts at 1 - 4.5e-5, not exactly 1
CLOSE = {'CSPDarknet', 'CSPNeXt', 'InceptionV3', 'CSPDarkNet', 'CSPResNet', 'CSPResNeXt'}


def with_se(model: dict, scope: str) -> tuple[dict, list[str]]:
    """The model config with SEBackbone/SENeck around its supported backbone and neck."""
    model = copy.deepcopy(model)
    kinds = []
    backbone = model.get('backbone')
    if isinstance(backbone, dict) and backbone.get('type') in BACKBONES[scope]:
        model['backbone'] = dict(type='SEBackbone', backbone=backbone)
        kinds.append(backbone['type'])
    neck = model.get('neck')
    if scope == 'mmdet' and isinstance(neck, dict) and neck.get('type') in NECKS:
        model['neck'] = dict(type='SENeck', neck=neck, se_outputs=True)
        kinds.append(neck['type'])
    return model, kinds


@cache
def zoo(scope: str) -> list[list[str]]:
    """Distinct models (compared without pretrained weights) of the scope's configs that
    get SE, each with its configs."""
    models = {}
    for path in sorted(CONFIGS[scope].rglob('*.py')):
        if '_base_' in path.parts:
            continue
        try:
            model = Config.fromfile(str(path)).get('model')
        except Exception:  # configs whose bases the wheel lacks; the other walks count them
            continue
        if not isinstance(model, dict) or model.get('type') in (
                'mmdet.DetTTAModel', 'DetTTAModel'):
            continue
        model = mmdet_zoo.without_downloads(model.to_dict())
        if model.get('type') in ('DetTTAModel',) or not with_se(model, scope)[1]:
            continue
        key = json.dumps(model, sort_keys=True, default=str)
        models.setdefault(key, []).append(str(path.relative_to(CONFIGS[scope])))
    return sorted(models.values())


def build(model: dict, scope: str):
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
    registry = {'mmdet': MMDET_MODELS, 'mmpretrain': MMPRETRAIN_MODELS}[scope]
    with DefaultScope.overwrite_default_scope(scope):
        return revert_sync_batchnorm(registry.build(ConfigDict(copy.deepcopy(model))))


def features(model, x: torch.Tensor) -> list[torch.Tensor]:
    out = model.extract_feat(x)
    if torch.is_tensor(out):
        out = [out]
    return [o for o in out if torch.is_tensor(o)]


def image_size(model: dict, size: int) -> int:
    """``size``, or the input size the model needs: VGG's classifier layers take 224 x 224
    only, InceptionV3 runs at its own 299 x 299 (too small a map fails its 3x3 convs)."""
    backbone = model.get('backbone') or {}
    backbone = backbone.get('backbone', backbone)  # inside SEBackbone
    if backbone.get('type') == 'VGG' and backbone.get('num_classes', -1) > 0:
        return 224
    if backbone.get('type') == 'InceptionV3':
        return 299
    return size


def classifier_step(model, size: int = 64) -> None:
    """One training step of an MMPretrain classifier on two random images of ``size``.

    The norms' affine weights are made random first and stochastic depth is off in the
    step: a zero-initialised residual norm (``zero_init_residual``, on by default in
    MMPretrain's ResNets, RegNet, ...) zeroes what the SE layer after it sees, and a block
    that drop path skips gets no gradient, so their SE layers would get an exactly zero
    gradient in one step with nothing wrong."""
    from mmpretrain.structures import DataSample
    mmdet_zoo_randomise(model)
    model.train()
    for module in model.modules():
        if type(module).__name__ == 'DropPath':
            module.eval()
    inputs = torch.rand(2, 3, size, size)
    samples = [DataSample().set_gt_label(i) for i in (0, 1)]
    losses = model.loss(inputs, samples)
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    model.eval()
    with torch.no_grad():
        predictions = model.predict(inputs)
    assert len(predictions) == 2 and all(torch.isfinite(p.pred_score).all()
                                         for p in predictions)


def se_layers(model) -> list:
    from seplugin.models.layers.se_layer import SELayer
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SELayer)]


class SEGradients:
    """Which SE layers of a model the step's loss reads (a gradient flows back into their
    output) and which of their parameters get a gradient."""

    def __init__(self):
        self.layers, self.read, self.reached = {}, set(), set()

    def watch(self, model) -> list:
        """Hooks on every SE layer of ``model``; no backbone for mmdet's walk to check."""
        self.model = model
        def forward_hook(module, args, out, name):
            if out.requires_grad:
                out.register_hook(lambda grad: self.read.add(name))

        for name, se in se_layers(model):
            self.layers[name] = se
            se.register_forward_hook(partial(forward_hook, name=name))
            for key, p in se.named_parameters(prefix=name):
                if p.requires_grad:
                    p.register_post_accumulate_grad_hook(
                        lambda p, key=key: self.reached.add(key))
        return []

    def check(self) -> None:
        """Every trainable SE layer whose output the loss reads gets a gradient in every
        parameter (an SE layer on a map no head reads, e.g. a level Fast R-CNN's RoI
        extractor skips, cannot: the plain model does not read that map either); some
        do; SE layers after frozen modules are frozen."""
        trainable = {n for n, se in self.layers.items()
                     if any(p.requires_grad for p in se.parameters())}
        read = trainable & self.read
        assert read, f'the loss reads none of the {len(trainable)} trainable SE layers'
        missing = [key for n in sorted(read) for key, p in self.layers[n].named_parameters(
            prefix=n) if p.requires_grad and key not in self.reached]
        assert not missing, f'no gradient for {missing[:5]} ({len(missing)} in all)'
        trainable_after_frozen = []
        for name in self.layers:
            host = self.model.get_submodule(name.rpartition('.')[0])
            own = [p for key, p in host.named_parameters() if not key.startswith('se_layer.')]
            if own and not any(p.requires_grad for p in own) and name in trainable:
                trainable_after_frozen.append(name)
        assert not trainable_after_frozen, f'SE after frozen modules is trainable: ' \
            f'{trainable_after_frozen[:5]} ({len(trainable_after_frozen)} in all)'


def loads_masks(cfg) -> bool:
    """Whether the config's training data has instance masks (LoadAnnotations with_mask);
    True when the config has no training pipeline."""
    loads = load_annotations(cfg.get('train_dataloader') or {})
    return not loads or any(item.get('with_mask', False) for item in loads)


def load_annotations(cfg) -> list[dict]:
    if isinstance(cfg, dict):
        found = [cfg] if cfg.get('type') == 'LoadAnnotations' else []
        return found + [d for v in cfg.values() for d in load_annotations(v)]
    if isinstance(cfg, (list, tuple)):
        return [d for v in cfg for d in load_annotations(v)]
    return []


def mmdet_step(model_cfg: dict, cfg, watch):
    """mmdet's walk's step and predictions for ``model_cfg``, its gradient check replaced
    by ``watch`` (called with the built model; returns the modules to check), with masks
    when the config's data has them (RTMDet's assigner reads masks given to it)."""
    backbones = mmdet_zoo.student_backbones
    mmdet_zoo.student_backbones = watch
    try:
        return mmdet_zoo.train_and_predict(model_cfg, cfg.optim_wrapper.to_dict(),
                                           with_mask=loads_masks(cfg))
    finally:
        mmdet_zoo.student_backbones = backbones


def check_predictions(predictions: list) -> None:
    """mmdet's walk's check of the predictions, its error said without the tensors' values
    (which check failed, and where), so that the plain model's same failure compares equal:
    an untrained YOLOX-X predicts infinite boxes after one step, with SE or without."""
    try:
        mmdet_zoo.check_predictions(predictions, track=False)
    except AssertionError as error:
        line = traceback.extract_tb(error.__traceback__)[-1]
        raise AssertionError(f'predictions fail the check at {Path(line.filename).name}:'
                             f'{line.lineno} ({line.line})') from None


def check_config(scope: str, config: str, size: int) -> None:
    cfg = Config.fromfile(str(CONFIGS[scope] / config))
    plain_cfg = mmdet_zoo.without_downloads(cfg.model.to_dict())
    if scope == 'mmdet':
        plain_cfg.get('data_preprocessor', {}).pop('batch_augments', None)
        mmdet_zoo.fewer_rois(plain_cfg)
    se_cfg, kinds = with_se(plain_cfg, scope)
    assert kinds
    # trains one step (a gradient in every SE layer) and predicts
    if scope == 'mmdet':
        gradients = SEGradients()
        model, predictions = mmdet_step(se_cfg, cfg, gradients.watch)
        gradients.check()
        check_predictions(predictions)
        assert se_layers(model), f'no SE layer in {config}'
    else:
        model = build(se_cfg, scope)
        model.init_weights()
        classifier_step(model, image_size(plain_cfg, 64))
        layers = se_layers(model)
        assert layers, f'no SE layer in {config}'
        no_grad = [n for n, m in layers if m.conv2.conv.bias.grad is None
                   or not m.conv2.conv.bias.grad.abs().sum() > 0]
        assert not no_grad, f'no gradient reaches {no_grad[:5]} ({len(no_grad)} of ' \
            f'{len(layers)})'
    # the neutral start from the plain model's own saved weights gives its outputs
    plain = build(plain_cfg, scope)
    plain.init_weights()
    mmdet_zoo_randomise(plain)
    se = build(se_cfg, scope)
    missing, unexpected = se.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all('se_' in k for k in missing), (unexpected, missing[:5])
    plain.double().eval(), se.double().eval()
    size = mmdet_zoo.image_shape(plain_cfg)[1] if scope == 'mmdet' else \
        image_size(plain_cfg, size)
    x = torch.rand(2, 3, size, size, dtype=torch.float64)
    with torch.no_grad():
        a, b = features(plain, x), features(se, x)
    exact = not (set(kinds) & CLOSE) and not any(k in NECKS for k in kinds)
    for u, v in zip(a, b, strict=True):
        if exact:
            torch.testing.assert_close(v, u, rtol=1e-10, atol=1e-10)
        else:
            torch.testing.assert_close(v, u, rtol=2e-3, atol=2e-3 * u.abs().max().item())


def mmdet_zoo_randomise(model) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.affine:
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-1, 1)


@pytest.mark.parametrize('scope,config', FAST, ids=[c for _, c in FAST])
def test_representative_configs(scope, config):
    check_config(scope, config, 64)


def pytest_generate_tests(metafunc):
    """The walk's configs, read only when the slow tests are selected (reading every
    config of both zoos takes minutes)."""
    if metafunc.function.__name__ != 'test_every_supported_config':
        return
    params = []
    if 'not slow' not in (metafunc.config.getoption('markexpr') or 'not slow'):
        params = [pytest.param(scope, configs[0], id=f'{scope}:{configs[0]}')
                  for scope in CONFIGS for configs in zoo(scope)]
    metafunc.parametrize('scope,config', params)


@pytest.mark.slow
def test_every_supported_config(scope, config):
    try:
        check_config(scope, config, 128 if scope == 'mmdet' else 96)
    except Exception as error:
        try:  # the same model as shipped: only a failure shared with it is expected
            cfg = Config.fromfile(str(CONFIGS[scope] / config))
            plain = mmdet_zoo.without_downloads(cfg.model.to_dict())
            if scope == 'mmdet':
                plain.get('data_preprocessor', {}).pop('batch_augments', None)
                mmdet_zoo.fewer_rois(plain)
                check_predictions(mmdet_step(plain, cfg, lambda model: [])[1])
            else:
                model = build(plain, scope)
                model.init_weights()
                classifier_step(model, image_size(plain, 64))
        except Exception as plain_error:
            if type(plain_error) is type(error) and str(plain_error) == str(error):
                pytest.xfail(f'fails as shipped too: {type(error).__name__}: {error}')
        raise


def test_one_step_reaches_se_after_zero_initialised_norms():
    """MMPretrain's ResNets zero their last residual norm (zero_init_residual) and drop path
    skips blocks: the walk's step still gives every SE layer a nonzero gradient."""
    model = build(dict(type='ImageClassifier',
                       backbone=dict(type='SEBackbone', backbone=dict(
                           type='ResNetV1c', depth=18, drop_path_rate=0.9)),
                       neck=dict(type='GlobalAveragePooling'),
                       head=dict(type='LinearClsHead', num_classes=2, in_channels=512)),
                  'mmpretrain')
    model.init_weights()
    assert all((m.weight == 0).all() for n, m in model.named_modules() if n.endswith('.bn2'))
    classifier_step(model)
    assert all(m.conv2.conv.bias.grad.abs().sum() > 0 for _, m in se_layers(model))


def test_se_gradients_skip_maps_no_head_reads_and_flag_frozen_hosts():
    """Fast R-CNN's RoI extractor reads 4 of FPN's 5 levels: the SE layer on the fifth gets
    no gradient, as the plain fifth map gets none; an SE layer after a frozen module must
    be frozen too (SE in a backbone's frozen stages)."""
    from seplugin.models import SENeck
    neck = SENeck(neck=dict(type='FPN', in_channels=[16, 32], out_channels=16, num_outs=3),
                  se_lateral=True)
    gradients = SEGradients()
    gradients.watch(neck)
    outs = neck((torch.rand(1, 16, 8, 8), torch.rand(1, 32, 4, 4)))
    (outs[0].sum() + outs[1].sum()).backward()
    gradients.check()
    assert gradients.read == set(gradients.layers) - {'output_se_layers.2'}
    for p in neck.lateral_convs[0].conv.parameters():
        p.requires_grad_(False)
    with pytest.raises(AssertionError, match=r'SE after frozen modules is trainable: '
                                             r"\['lateral_convs.0.se_layer'\]"):
        gradients.check()


def test_demo_data_follow_the_config():
    """RTMDet's assigner reads instance masks when given them, though its data has none;
    SSD's neck needs its anchors' input size (300, 512)."""
    folder = CONFIGS['mmdet']
    assert not loads_masks(Config.fromfile(str(folder / 'rtmdet/rtmdet_tiny_8xb32-300e_coco.py')))
    assert loads_masks(Config.fromfile(str(folder / 'mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py')))
    ssd = Config.fromfile(str(folder / 'ssd/ssd512_coco.py')).model.to_dict()
    assert mmdet_zoo.image_shape(ssd) == (3, 512, 512)
    assert mmdet_zoo.image_shape(dict(type='RetinaNet')) == mmdet_zoo.IMAGE_SHAPE


def test_image_sizes_the_models_take():
    vgg = dict(backbone=dict(type='SEBackbone', backbone=dict(type='VGG', num_classes=10)))
    assert image_size(vgg, 64) == 224
    assert image_size(dict(backbone=dict(type='VGG', num_classes=-1)), 64) == 64
    assert image_size(dict(backbone=dict(type='InceptionV3')), 96) == 299


SE_CONFIGS = sorted(p.name for p in (ROOT / 'configs' / 'se_anywhere').glob('se-*.py'))


@pytest.mark.parametrize('name', SE_CONFIGS)
def test_own_configs_differ_from_their_baseline_by_se_only(name):
    folder = ROOT / 'configs' / 'se_anywhere'
    se = Config.fromfile(str(folder / name))
    baseline_name = {'se-neck_': ''}.get(name[:8], None)
    baseline = name[len('se-neck_'):] if baseline_name is not None else name[len('se-'):]
    plain = Config.fromfile(str(folder / baseline))
    scope = 'mmdet' if 'coco' in name else 'mmpretrain'
    se_model, plain_model = se.model.to_dict(), plain.model.to_dict()
    for part in ('backbone', 'neck'):
        if se_model.get(part) and se_model[part]['type'] in ('SEBackbone', 'SENeck'):
            inner = se_model[part]['backbone' if part == 'backbone' else 'neck']
            assert inner == plain_model[part], part
            se_model[part] = plain_model[part]
    assert se_model == plain_model
    if name.startswith('se-yolox'):  # fine-tuned from mmdet's published YOLOX-S
        meta = yaml.safe_load((CONFIGS['mmdet'] / 'yolox' / 'metafile.yml').read_text())
        assert se.load_from in {m.get('Weights') for m in meta['Models']}
    # builds, and loads the baseline's (random) weights to compute the same features
    plain_net = build(mmdet_zoo.without_downloads(plain.model.to_dict()), scope)
    mmdet_zoo_randomise(plain_net)
    se_net = build(mmdet_zoo.without_downloads(se.model.to_dict()), scope)
    assert se_layers(se_net)
    missing, unexpected = se_net.load_state_dict(plain_net.state_dict(), strict=False)
    assert not unexpected and all('se_' in k for k in missing)
    plain_net.double().eval(), se_net.double().eval()
    # VGG's classifier layers take 224 x 224 only
    x = torch.rand(1, 3, 224, 224) if 'vgg' in name else torch.rand(2, 3, 64, 64)
    x = x.double()
    with torch.no_grad():
        for u, v in zip(features(plain_net, x), features(se_net, x), strict=True):
            torch.testing.assert_close(v, u, rtol=2e-3, atol=2e-3 * u.abs().max().item())


def test_metafile_lists_every_own_config():
    meta = yaml.safe_load((ROOT / 'configs' / 'se_anywhere' / 'metafile.yml').read_text())
    listed = {m['Config'] for m in meta['Models']}
    assert listed == {f'configs/se_anywhere/{p.name}'
                      for p in (ROOT / 'configs' / 'se_anywhere').glob('*.py')}
    assert all(m['Results'] == [] for m in meta['Models'])
    se_shufflenet = next(m for m in meta['Models']
                         if m['Name'] == 'se-shufflenet-v1-1x_16xb64_in1k')
    assert se_shufflenet['Metadata']['Paper Reference']['Parameters'] == '2.4M'


def test_se_shufflenet_config_has_the_papers_parameters():
    """tools/complexity.py's count for configs/se_anywhere/se-shufflenet-v1-1x_16xb64_in1k.py:
    2.4M parameters, SE-ShuffleNet 1x (g=3) in the paper's Table 3 (ShuffleNet 1x: 1.9M)."""
    from seplugin.analysis.complexity import build_from_config, count_params
    folder = ROOT / 'configs' / 'se_anywhere'
    se, _ = build_from_config(str(folder / 'se-shufflenet-v1-1x_16xb64_in1k.py'))
    plain, _ = build_from_config(str(folder / 'shufflenet-v1-1x_16xb64_in1k.py'))
    assert round(count_params(se) / 1e6, 1) == 2.4
    assert round(count_params(plain) / 1e6, 1) == 1.9


def test_failed_predictions_compare_equal_with_and_without_se():
    """The expected-failure test compares error messages: the predictions check says where
    it failed, not the values (infinite boxes of different sizes)."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    messages = []
    inf = float('inf')
    for bboxes in ([[0., 0., inf, 1.]], [[0., 0., 1., 1.], [-inf, 0., 2., 3e38]]):
        bboxes = torch.tensor(bboxes)
        sample = DetDataSample(metainfo=dict(img_shape=(8, 8), ori_shape=(8, 8)))
        sample.pred_instances = InstanceData(bboxes=bboxes, scores=torch.ones(len(bboxes)),
                                             labels=torch.zeros(len(bboxes), dtype=torch.long))
        with pytest.raises(AssertionError) as error:
            check_predictions([sample, sample])
        messages.append(str(error.value))
    assert messages[0] == messages[1] and 'isfinite(instances.bboxes)' in messages[0]
