"""MMDetection's own configs with SE: every config shipped in the installed mmdet whose model
uses a ResNet (or ResNeXt) builds with seplugin's SEResNet (SEResNeXt) in its place, trains
one step on mmdet's demo inputs and predicts.

``pytest -m slow tests/test_configs/test_mmdet_zoo.py`` walks every such config, one test
per distinct model (configs that differ only in data or schedule share a model); the default
run covers a handful of distinct architectures. A config that fails with SE is run again
with mmdet's own ResNet: only when that fails with the same error (an op without a CPU
kernel, a package that is not installed, ...) is it an expected failure, with that error as
the reason. Any other failure is seplugin's.
"""
import copy
import json
from collections import Counter
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import mmdet
import numpy as np
import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.logging import MessageHub
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

from seplugin.models.backbones.se_resnet import SEResNet

MMDET_CONFIGS = Path(mmdet.__file__).parent / '.mim' / 'configs'
# The plain backbone types a config may use, and the SE class that takes each one's place.
SE_TYPES = {
    'ResNet': 'SEResNet',
    'ResNeXt': 'SEResNeXt',
    # the re-identification backbones of mmdet's trackers are MMPretrain's ResNet
    'mmpretrain.ResNet': 'mmpretrain.SEResNet',
}
# Two small images keep a CPU step short; 128 is a multiple of every stride in the zoo.
IMAGE_SHAPE = (3, 128, 128)
# Larger where a detector needs it: DINO picks its 900 queries among the encoder's tokens
# (340 at 128 px, 1360 at 256 px); DDOD's head runs mmcv's DCN, which refuses maps smaller
# than its 3x3 kernel, on P7 (stride 128).
IMAGE_SHAPES = {'DINO': (3, 256, 256), 'DDOD': (3, 384, 384)}
BATCH = 2
# The default run: distinct backbone settings (caffe and pytorch style, ResNeXt, DCN, only
# the last stage out) under distinct detectors (two-stage with masks, one-stage, DETR).
REPRESENTATIVES = [
    'faster_rcnn/faster-rcnn_r50-caffe_fpn_1x_coco.py',
    'retinanet/retinanet_r50_fpn_1x_coco.py',
    'mask_rcnn/mask-rcnn_x101-32x4d_fpn_1x_coco.py',
    'fcos/fcos_r50-dcn-caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco.py',
    'detr/detr_r50_8xb2-150e_coco.py',
]


def resnet_dicts(cfg) -> Iterator[dict]:
    """Every backbone dict of a plain ResNet/ResNeXt in a model config, however nested."""
    if isinstance(cfg, dict):
        if cfg.get('type') in SE_TYPES:
            yield cfg
        for value in cfg.values():
            yield from resnet_dicts(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            yield from resnet_dicts(value)


def without_downloads(cfg):
    """A copy of a model config without pretrained weights (no network here): ``Pretrained``
    init_cfgs, ``pretrained`` and the distillation teachers' checkpoints are dropped."""
    if isinstance(cfg, dict):
        out = {}
        for key, value in cfg.items():
            if key == 'pretrained' or key == 'teacher_ckpt':
                continue
            if key == 'init_cfg' and 'Pretrained' in json.dumps(value, default=str):
                continue
            out[key] = without_downloads(value)
        return out
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(without_downloads(value) for value in cfg)
    return cfg


def prepared(model: dict, se: bool) -> dict:
    """The model config to run: with SE backbones (``se=True``) or as shipped, offline."""
    model = without_downloads(copy.deepcopy(model))
    teacher = model.get('teacher_config')
    if isinstance(teacher, str):
        # Distillation configs name their teacher by a path inside mmdet's repository.
        teacher = Config.fromfile(str(MMDET_CONFIGS / Path(teacher).relative_to('configs')))
        model['teacher_config'] = Config(dict(model=prepared(teacher.model.to_dict(), se)))
    if se:
        for backbone in resnet_dicts(model):
            backbone['type'] = SE_TYPES[backbone['type']]
    # Batch augmentations pad or resize to training scales (up to 1024 px), too slow here.
    model.get('data_preprocessor', {}).pop('batch_augments', None)
    fewer_rois(model)
    return model


def fewer_rois(cfg) -> None:
    """Fewer sampled RoIs and proposals (at most 64 and 100 per image), in place: RoIAlign
    on hundreds of RoIs per stage dominates a CPU step of a two-stage detector. Only the
    heads' workload changes, not a layer of the model."""
    if isinstance(cfg, dict):
        if isinstance(cfg.get('sampler'), dict) and cfg['sampler'].get('num', 0) > 64:
            cfg['sampler']['num'] = 64
        if isinstance(cfg.get('max_per_img'), int) and 'nms' in cfg:
            cfg['max_per_img'] = min(cfg['max_per_img'], 100)
        for value in cfg.values():
            fewer_rois(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            fewer_rois(value)


@cache
def zoo() -> dict:
    """mmdet's shipped configs: how many, which fail to load as shipped, and for each
    distinct model (compared without pretrained weights) with a ResNet, its configs."""
    paths = sorted(p for p in MMDET_CONFIGS.rglob('*.py') if '_base_' not in p.parts)
    broken, models = {}, {}
    for path in paths:
        name = str(path.relative_to(MMDET_CONFIGS))
        try:
            cfg = Config.fromfile(str(path))
        except Exception as error:  # shipped configs whose bases are missing from the wheel
            broken[name] = f'{type(error).__name__}: {error}'
            continue
        model = cfg.get('model')
        if isinstance(model, dict) and next(resnet_dicts(model.to_dict()), None):
            key = json.dumps(without_downloads(model.to_dict()), sort_keys=True, default=str)
            models.setdefault((model['type'], key), []).append(name)
    # Every detector type once first, then the variants: a walk cut short has seen the most.
    rank, count = {}, Counter()
    for key in sorted(models, key=lambda key: models[key][0]):
        rank[key] = count[key[0]]
        count[key[0]] += 1
    order = sorted(models, key=lambda key: (rank[key], models[key][0]))
    return dict(total=len(paths), broken=broken, models=[models[key] for key in order])


def image_shape(model_cfg: dict) -> tuple[int, int, int]:
    """The demo images' shape: IMAGE_SHAPES by model type, SSD at its anchors' input size
    (300 or 512: smaller maps fail the last 3x3 convs of its neck), else IMAGE_SHAPE."""
    anchors = (model_cfg.get('bbox_head') or {}).get('anchor_generator') or {}
    if 'SSDAnchorGenerator' in str(anchors.get('type')) and anchors.get('input_size'):
        return (3, anchors['input_size'], anchors['input_size'])  # (Legacy)SSDAnchorGenerator
    return IMAGE_SHAPES.get(model_cfg['type'], IMAGE_SHAPE)


def demo_inputs(model_cfg: dict, track: bool, with_mask: bool = True) -> tuple[dict, dict]:
    """Training and test batches from mmdet's own test utilities: random images, boxes, masks
    and semantic maps, labels valid for every head of the model (video clips for trackers,
    identities for re-identification, one batch per branch for semi-supervised training)."""
    from mmdet.testing import demo_mm_inputs, demo_mm_proposals, demo_track_inputs
    if model_cfg['type'] == 'BaseReID':  # two identities, two crops each, as mmdet's tests
        from mmdet.structures import ReIDDataSample
        crops = torch.randint(0, 256, (4, 3, 256, 128), dtype=torch.uint8)
        data = dict(inputs=list(crops),
                    data_samples=[ReIDDataSample().set_gt_label(i) for i in (0, 0, 1, 1)])
        return data, data
    counts = [v for k, v in iter_items(model_cfg)
              if k in ('num_classes', 'num_things_classes') and isinstance(v, int) and v > 0]
    # at least 2 (labels are drawn from 1..n-1); at most 255 (the semantic maps are uint8)
    num_classes = min(max(2, min(counts, default=2)), 255)
    shape = image_shape(model_cfg)
    np.random.seed(0)  # demo_mm_inputs draws the semantic maps from numpy's global state
    if track:
        data = demo_track_inputs(batch_size=1, num_frames=2, key_frames_inds=[0],
                                 image_shapes=shape, num_classes=num_classes,
                                 with_mask=with_mask)
        if min(counts, default=2) == 1:  # one-class heads (CrowdHuman, MOT): label 0 only
            for clip in data['data_samples']:
                for frame in clip.video_data_samples:
                    frame.gt_instances.labels.zero_()
        return data, data
    data = demo_mm_inputs(batch_size=BATCH, image_shapes=shape, num_classes=num_classes,
                          with_mask=with_mask, with_semantic=True)
    if min(counts, default=2) == 1:  # one-class heads (CrowdHuman, MOT): label 0 only
        for sample in data['data_samples']:
            sample.gt_instances.labels.zero_()
    if model_cfg['type'] == 'FastRCNN':  # takes precomputed proposals
        for sample, proposals in zip(data['data_samples'],
                                     demo_mm_proposals([shape] * BATCH, 100)):
            sample.proposals = proposals
    if 'semi_train_cfg' in model_cfg:  # the same images in every branch, not augmented
        for sample in data['data_samples']:
            sample.set_metainfo(dict(homography_matrix=np.eye(3, dtype=np.float32)))
        branches = ('sup', 'unsup_teacher', 'unsup_student')
        return {key: {branch: copy.deepcopy(data[key]) for branch in branches}
                for key in data}, data
    return data, data


def iter_items(cfg) -> Iterator[tuple]:
    if isinstance(cfg, dict):
        for key, value in cfg.items():
            yield key, value
            yield from iter_items(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            yield from iter_items(value)


def student_backbones(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The trained backbones (a tracker's detector and re-identifier, a semi-supervised
    student; not a teacher)."""
    owners = [model] + [getattr(model, name, None) for name in ('detector', 'reid', 'student')]
    return [owner.backbone for owner in owners if isinstance(getattr(owner, 'backbone', None),
                                                             torch.nn.Module)]


def train_and_predict(model_cfg: dict, optim_cfg: dict,
                      with_mask: bool = True) -> tuple[torch.nn.Module, list]:
    """Build as mmengine's Runner does, train one step, predict; returns the model and the
    predictions. Checks on the way that the step is finite and reaches every trainable
    parameter of the backbones."""
    from mmdet.models.mot import BaseMOTModel
    from mmdet.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmdet'):
        # as mmengine's Runner builds it in a single process
        model = revert_sync_batchnorm(MODELS.build(ConfigDict(model_cfg)))
        model.init_weights()
        optim_cfg = dict(copy.deepcopy(optim_cfg), type='OptimWrapper')
        for key in ('loss_scale', 'dtype'):  # AMP needs a GPU
            optim_cfg.pop(key, None)
        optim_wrapper = build_optim_wrapper(model, optim_cfg)
        track = isinstance(model, BaseMOTModel)
        train_data, test_data = demo_inputs(model_cfg, track, with_mask)

        grads = {}
        backbone_params = {id(p): name for backbone in student_backbones(model)
                           for name, p in backbone.named_parameters() if p.requires_grad}
        for p in model.parameters():
            if id(p) in backbone_params:
                p.register_post_accumulate_grad_hook(
                    lambda p: grads.__setitem__(id(p), p.grad.detach().clone()))
        # what the Runner publishes before the first step (TOOD's head reads the epoch)
        message_hub = MessageHub.get_current_instance()
        message_hub.update_info('epoch', 0)
        message_hub.update_info('iter', 0)
        model.train()
        losses = model.train_step(train_data, optim_wrapper)
        for name, value in losses.items():
            assert torch.isfinite(value).all(), f'loss {name} is {value}'
        missing = [name for key, name in backbone_params.items() if key not in grads]
        assert not missing, f'no gradient for {missing[:5]} ({len(missing)} in all)'
        bad = [backbone_params[k] for k, g in grads.items() if not torch.isfinite(g).all()]
        assert not bad, f'non-finite gradient for {bad[:5]}'

        model.eval()
        with torch.no_grad():
            predictions = [p for batch in single_image_batches(test_data, model_cfg, track)
                           for p in model.val_step(batch)]
    return model, predictions


def single_image_batches(data: dict, model_cfg: dict, track: bool) -> list[dict]:
    """One image per batch, as mmdet's test dataloaders have it (guided anchoring's
    MaskedConv2d takes nothing else); a clip for trackers, the crops for re-identification."""
    if track or model_cfg['type'] == 'BaseReID':
        return [data]
    return [dict(inputs=[image], data_samples=[sample])
            for image, sample in zip(data['inputs'], data['data_samples'])]


def check_predictions(predictions: list, track: bool) -> None:
    """Structured, finite predictions: one sample per image, boxes (N, 4), scores and labels
    (N,), masks (N, H, W) of the image's size; panoptic or semantic maps of that size."""
    from mmdet.structures import DetDataSample, ReIDDataSample, TrackDataSample
    if isinstance(predictions[0], ReIDDataSample):  # one embedding per crop
        assert len(predictions) == 4
        for sample in predictions:
            assert sample.pred_feature.ndim == 1 and torch.isfinite(sample.pred_feature).all()
        return
    assert len(predictions) == (1 if track else BATCH)
    samples = [s for p in predictions for s in
               (p.video_data_samples if isinstance(p, TrackDataSample) else [p])]
    for sample in samples:
        assert isinstance(sample, DetDataSample), type(sample)
        height, width = sample.ori_shape
        fields = [f for f in ('pred_instances', 'pred_track_instances', 'pred_panoptic_seg',
                              'pred_sem_seg') if f in sample]
        assert fields, f'no predictions in {sample.keys()}'
        for field in fields:
            if field.endswith('_seg'):
                seg = getattr(sample, field).sem_seg
                assert seg.shape[-2:] == (height, width), (field, seg.shape)
                continue
            instances = getattr(sample, field)
            n = len(instances)
            if 'bboxes' in instances:
                assert instances.bboxes.shape == (n, 4), instances.bboxes.shape
                assert torch.isfinite(instances.bboxes).all()
            assert instances.scores.shape == (n,) and torch.isfinite(instances.scores).all()
            assert instances.labels.shape == (n,) and (instances.labels >= 0).all()
            if 'masks' in instances:
                assert tuple(instances.masks.shape) == (n, height, width), instances.masks.shape


def check_se_backbones(model: torch.nn.Module, model_cfg: dict) -> None:
    """Every ResNet of the config became an SE-ResNet with an SE layer in every block."""
    se_types = set(SE_TYPES.values())
    expected = sum(1 for key, value in iter_items(model_cfg)
                   if key == 'type' and value in se_types)
    teacher = model_cfg.get('teacher_config')
    if isinstance(teacher, Config):  # the teacher config came along switched
        expected += sum(1 for key, value in iter_items(teacher.model.to_dict())
                        if key == 'type' and value in se_types)
    modules = list(model.modules())
    if isinstance(getattr(model, 'teacher_model', None), torch.nn.Module):
        modules += model.teacher_model.modules()  # a plain attribute of distillers
    if 'semi_train_cfg' in model_cfg:  # a student and a teacher built from one detector
        expected *= 2
    se_backbones = [m for m in modules if isinstance(m, SEResNet)]
    assert expected and len(se_backbones) == expected
    for backbone in se_backbones:
        blocks = list(backbone.blocks())
        assert blocks and all(block.se_position == 'standard' for block in blocks)
        if not any(backbone is student for student in student_backbones(model)):
            continue  # teachers are frozen whole
        # frozen stages freeze their SE layers too; the others train them
        for stage, name in enumerate(backbone.res_layers, 1):
            se_params = [p for block in getattr(backbone, name) for p in
                         block.se_layer.parameters()]
            frozen = stage <= backbone.frozen_stages
            assert all(p.requires_grad != frozen for p in se_params), (name, frozen)


# What a backbone config sets or leaves to the class's defaults, and changes the computation
DROP_IN_ATTRIBUTES = ('depth', 'num_stages', 'out_indices', 'frozen_stages', 'norm_eval',
                      'strides', 'dilations', 'style', 'deep_stem', 'avg_down', 'with_cp',
                      'zero_init_residual', 'stage_with_dcn', 'groups', 'base_width')


def check_drop_in(backbone: dict) -> None:
    """The SE class built from a config's backbone dict has the settings of the plain class
    built from the same dict (defaults included) and its trunk's checkpoint layout, plus the
    ``se_layer`` keys."""
    from mmdet.registry import MODELS
    backbone = without_downloads(backbone)
    with DefaultScope.overwrite_default_scope('mmdet'):
        plain = MODELS.build(backbone)
        se = MODELS.build(dict(backbone, type=SE_TYPES[backbone['type']]))
    differ = {key: (getattr(plain, key, None), getattr(se, key, None))
              for key in DROP_IN_ATTRIBUTES
              if hasattr(plain, key) and getattr(plain, key) != getattr(se, key, None)}
    assert not differ, (f'{type(se).__name__} differs from {type(plain).__name__} built from '
                        f'{backbone}: {{attribute: (plain, SE)}} = {differ}')
    trunk = {k: v.shape for k, v in se.state_dict().items() if '.se_layer.' not in k}
    assert trunk == {k: v.shape for k, v in plain.state_dict().items()}


def run_config(name: str, model: dict, optim: dict) -> None:
    """Train and predict with SE; on an error, xfail only if mmdet's ResNet fails alike."""
    from mmdet.models.mot import BaseMOTModel
    se_cfg = prepared(model, se=True)
    try:
        se_model, predictions = train_and_predict(se_cfg, optim)
    except Exception as se_error:
        try:
            train_and_predict(prepared(model, se=False), optim)
        except Exception as plain_error:
            if (type(plain_error), str(plain_error)) == (type(se_error), str(se_error)):
                pytest.xfail(f'fails with mmdet ResNet too: {type(se_error).__name__}: '
                             f'{se_error}'[:300])
            raise AssertionError(f'{name} fails with SE ({se_error!r}) and with mmdet ResNet '
                                 f'differently ({plain_error!r})') from se_error
        for backbone in resnet_dicts(model):  # name a difference of the backbones, if any
            check_drop_in(backbone)
        raise AssertionError(f'{name} works with mmdet ResNet but not with SE') from se_error
    check_se_backbones(se_model, se_cfg)
    for backbone in resnet_dicts(model):
        check_drop_in(backbone)
    check_predictions(predictions, isinstance(se_model, BaseMOTModel))


def shipped(name: str) -> tuple[dict, dict]:
    cfg = Config.fromfile(str(MMDET_CONFIGS / name))
    optim = cfg.get('optim_wrapper')  # trackers trained in parts have none
    return cfg.model.to_dict(), optim.to_dict() if optim else dict(
        optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4))


@pytest.mark.parametrize('name', REPRESENTATIVES)
def test_representative_config_trains_and_predicts_with_se(name):
    model, optim = shipped(name)
    assert next(resnet_dicts(model), None), f'{name} has no ResNet any more'
    run_config(name, model, optim)


def _walks_the_zoo(config) -> bool:
    """Whether this session selects slow tests: the zoo's 30 s scan is not made otherwise."""
    expression = config.getoption('markexpr')
    if not expression:
        return True
    from _pytest.mark.expression import Expression
    return Expression.compile(expression).evaluate(lambda name, **kwargs: name == 'slow')


def pytest_generate_tests(metafunc):
    if 'zoo_configs' not in metafunc.fixturenames:
        return
    if _walks_the_zoo(metafunc.config):
        groups = zoo()['models']
        metafunc.parametrize('zoo_configs', groups, ids=[g[0] for g in groups])
    else:
        metafunc.parametrize('zoo_configs', [None], ids=['not-walked'])


@pytest.mark.slow
def test_zoo_config_trains_and_predicts_with_se(zoo_configs):
    name = zoo_configs[0]
    model, optim = shipped(name)
    run_config(name, model, optim)


@pytest.mark.slow
def test_zoo_is_walked():
    """The walk found what mmdet ships: configs with ResNets, and only the known broken ones
    unloadable (their bases are not in the wheel)."""
    found = zoo()
    assert found['total'] > 800
    assert sum(map(len, found['models'])) > 500 and len(found['models']) > 300
    assert all(name.startswith(('bytetrack/', 'sort/')) for name in found['broken'])


def test_resnet_dicts_finds_nested_backbones():
    model = dict(type='LAD', backbone=dict(type='ResNet', depth=101),
                 teacher_backbone=dict(type='ResNet', depth=50),
                 detector=dict(type='X', backbone=dict(type='ResNeXt', depth=50)),
                 neck=dict(type='FPN', in_channels=[256]))
    assert [d['depth'] for d in resnet_dicts(model)] == [101, 50, 50]
    switched = prepared(model, se=True)
    assert [d['type'] for d in (switched['backbone'], switched['teacher_backbone'],
                                switched['detector']['backbone'])] == \
        ['SEResNet', 'SEResNet', 'SEResNeXt']
    assert model['backbone']['type'] == 'ResNet'  # the shipped config is left alone


def test_pretrained_weights_are_dropped():
    model = dict(type='X', backbone=dict(
        type='ResNet', depth=50,
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
        pretrained='x.pth', teacher_ckpt='t.pth',
        neck=dict(type='FPN', init_cfg=dict(type='Xavier', layer='Conv2d')))
    assert without_downloads(model) == dict(type='X', backbone=dict(type='ResNet', depth=50),
                                            neck=model['neck'])
    assert 'init_cfg' in model['backbone']  # the shipped config is left alone


@pytest.mark.parametrize('track', [False, True])
def test_one_class_models_get_label_zero(track):
    """CrowdHuman and MOT heads have one class: demo labels (drawn from 1..n-1, n >= 2)
    would be out of range ('Class values must be smaller than num_classes')."""
    model = dict(type='X', bbox_head=dict(num_classes=1))
    data, _ = demo_inputs(model, track)
    samples = [frame for clip in data['data_samples'] for frame in clip.video_data_samples] \
        if track else data['data_samples']
    assert all((s.gt_instances.labels == 0).all() for s in samples)
    many, _ = demo_inputs(dict(type='X', bbox_head=dict(num_classes=80)), track=False)
    assert all((s.gt_instances.labels >= 1).all() for s in many['data_samples'])
