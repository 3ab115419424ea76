"""The detection configs: each builds its model, and each SE config differs from its
baseline only in the backbone or neck."""
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

CONFIGS = Path(__file__).parents[2] / 'configs'
MMDET_CONFIGS = Path(__import__('mmdet').__file__).parent / '.mim' / 'configs'


def detection_configs() -> list[Path]:
    """Every config under configs/ whose default scope is mmdet."""
    return sorted(path for path in CONFIGS.rglob('*.py')
                  if Config.fromfile(str(path)).get('default_scope') == 'mmdet')


DETECTION_CONFIGS = detection_configs()
# (SE config, its baseline, the model parts that may differ)
PAIRS = [
    ('faster_rcnn_se_r50_fpn_coco.py', 'faster_rcnn_r50_fpn_coco.py', {'backbone'}),
    ('faster_rcnn_se_r101_fpn_coco.py', 'faster_rcnn_r101_fpn_coco.py', {'backbone'}),
    ('faster_rcnn_r50_sefpn_coco.py', 'faster_rcnn_r50_fpn_coco.py', {'neck'}),
    ('faster_rcnn_se_r50_sefpn_coco.py', 'faster_rcnn_r50_fpn_coco.py', {'backbone', 'neck'}),
    ('mini/faster_rcnn_se_r18_fpn_minicoco.py', 'mini/faster_rcnn_r18_fpn_minicoco.py',
     {'backbone'}),
]


def load(name: str) -> dict:
    return Config.fromfile(str(CONFIGS / name)).to_dict()


def test_all_detection_configs_are_found():
    names = {str(path.relative_to(CONFIGS)) for path in DETECTION_CONFIGS}
    assert {se for se, _, _ in PAIRS} | {base for _, base, _ in PAIRS} <= names
    assert 'faster_rcnn_r101_fpn_coco.py' in names


@pytest.mark.parametrize('path', DETECTION_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_model_builds(path):
    from mmdet.registry import MODELS
    cfg = Config.fromfile(str(path))
    # The scope tools/train.py sets from default_scope (restored afterwards for other tests)
    # (an unregistered type fails the build: a KeyError naming it)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
        backbone, neck = MODELS.get(cfg.model.backbone.type), MODELS.get(cfg.model.neck.type)
    assert type(model.backbone) is backbone and type(model.neck) is neck
    assert model.backbone.depth == cfg.model.backbone.depth


@pytest.mark.parametrize('se, baseline, differing', PAIRS, ids=[p[0] for p in PAIRS])
def test_se_config_differs_from_baseline_only_in_the_model_parts(se, baseline, differing):
    se_cfg, base_cfg = load(se), load(baseline)
    se_model, base_model = se_cfg.pop('model'), base_cfg.pop('model')
    assert se_cfg == base_cfg  # data, pipeline, schedule, runtime, seed
    for part in differing:
        se_part, base_part = se_model.pop(part), base_model.pop(part)
        assert se_part['type'] != base_part['type']
        # Besides the type only SE options may change
        for key in ('type', 'se_ratio', 'init_cfg'):
            se_part.pop(key, None)
            base_part.pop(key, None)
        assert se_part == base_part
    assert se_model == base_model


def test_se_backbones_init_from_the_matching_torchvision_resnet():
    for name, depth in [('faster_rcnn_se_r50_fpn_coco.py', 50),
                        ('faster_rcnn_se_r101_fpn_coco.py', 101),
                        ('faster_rcnn_se_r50_sefpn_coco.py', 50)]:
        backbone = load(name)['model']['backbone']
        assert backbone['depth'] == depth
        assert backbone['init_cfg'] == dict(type='Pretrained',
                                            checkpoint=f'torchvision://resnet{depth}')


@pytest.mark.parametrize('ours, mmdets', [
    ('faster_rcnn_r50_fpn_coco.py', 'faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'),
    ('faster_rcnn_r101_fpn_coco.py', 'faster_rcnn/faster-rcnn_r101_fpn_1x_coco.py'),
])
def test_baselines_are_mmdets_configs_with_the_checked_dataset(ours, mmdets):
    def without_scopes(value):
        # Configs read through mmdet:: carry _scope_ keys; they do not change the content.
        if isinstance(value, dict):
            return {k: without_scopes(v) for k, v in value.items() if k != '_scope_'}
        if isinstance(value, (list, tuple)):
            return type(value)(without_scopes(v) for v in value)
        return value

    cfg, reference = without_scopes(load(ours)), without_scopes(
        Config.fromfile(str(MMDET_CONFIGS / mmdets)).to_dict())
    assert cfg.pop('custom_imports')['imports'][0] == 'seplugin'
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[loader]['dataset'].pop('type') == 'CheckedCocoDataset'
        assert reference[loader]['dataset'].pop('type') == 'CocoDataset'
    assert cfg == reference
    assert cfg['train_dataloader']['dataset']['data_root'] == 'data/coco/'


def test_mini_configs_settings():
    cfg = load('mini/faster_rcnn_r18_fpn_minicoco.py')
    assert cfg['randomness'] == dict(seed=0)
    assert cfg['test_dataloader'] == cfg['val_dataloader']
    assert cfg['test_evaluator'] == cfg['val_evaluator']
    assert cfg['model']['backbone']['init_cfg'] is None
    for loader in ('train_dataloader', 'val_dataloader'):
        assert cfg[loader]['num_workers'] <= 1 and not cfg[loader]['persistent_workers']
    se = load('mini/faster_rcnn_se_r18_fpn_minicoco.py')['model']['backbone']
    # Every SE layer keeps at least one channel in its squeeze.
    assert se['base_channels'] / se['se_ratio'] >= 1
