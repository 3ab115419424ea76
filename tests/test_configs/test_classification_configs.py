"""The classification configs (ImageNet, Places365, mini): each builds its model in the
mmpretrain scope, and each SE config differs from its baseline only in the backbone type."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.models import ResNet, ResNeXt

import seplugin  # noqa: F401  (registers Places365)
from seplugin.models import MMPretrainSEResNet, MMPretrainSEResNeXt

CONFIGS = Path(__file__).parents[2] / 'configs'
FOLDERS = ('imagenet', 'places365', 'mini')


def classification_configs() -> list[Path]:
    """Every config under the classification folders whose default scope is mmpretrain."""
    return sorted(path for folder in FOLDERS for path in (CONFIGS / folder).glob('*.py')
                  if Config.fromfile(str(path)).get('default_scope') == 'mmpretrain')


CLASSIFICATION_CONFIGS = classification_configs()
# (SE config, its baseline), relative to configs/
PAIRS = [
    *[(f'imagenet/se{arch}_8xb32_in1k.py', f'imagenet/{arch}_8xb32_in1k.py')
      for arch in ('resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152',
                   'resnext50-32x4d', 'resnext101-32x4d')],
    *[(f'places365/se{arch}_8xb32_places365.py', f'places365/{arch}_8xb32_places365.py')
      for arch in ('resnet50', 'resnet152')],
    *[(f'mini/seresnet18_mini_{data}.py', f'mini/resnet18_mini_{data}.py')
      for data in ('imagenet', 'places365')],
]
# the mmpretrain scope's SE classes: seplugin's, with MMPretrain's defaults and layout
SE_CLASSES = {'SEResNet': MMPretrainSEResNet, 'SEResNeXt': MMPretrainSEResNeXt}
BASE_CLASSES = {'ResNet': ResNet, 'ResNeXt': ResNeXt}


def name(path: Path) -> str:
    return str(path.relative_to(CONFIGS))


def load(rel: str) -> dict:
    return Config.fromfile(str(CONFIGS / rel)).to_dict()


def test_every_pair_is_there():
    names = {name(path) for path in CLASSIFICATION_CONFIGS}
    assert {cfg for pair in PAIRS for cfg in pair} == names


@pytest.mark.parametrize('path', CLASSIFICATION_CONFIGS, ids=name)
def test_model_builds_in_the_mmpretrain_scope(path):
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(str(path))
    assert cfg.custom_imports.allow_failed_imports is False
    assert 'seplugin' in cfg.custom_imports.imports
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model)
    backbone = model.backbone
    classes = SE_CLASSES if cfg.model.backbone.type.startswith('SE') else BASE_CLASSES
    # seplugin's class for the SE names (not mmpretrain's), mmpretrain's for the baselines
    assert type(backbone) is classes[cfg.model.backbone.type]
    assert backbone.depth == cfg.model.backbone.depth
    assert model.head.fc.out_features == cfg.model.head.num_classes
    assert model.head.fc.in_features == cfg.model.head.in_channels


@pytest.mark.parametrize('se, baseline', PAIRS, ids=[se for se, _ in PAIRS])
def test_se_config_differs_from_baseline_only_in_the_backbone_type(se, baseline):
    se_cfg, base_cfg = load(se), load(baseline)
    se_backbone = se_cfg['model'].pop('backbone')
    base_backbone = base_cfg['model'].pop('backbone')
    assert se_cfg == base_cfg  # data, pipeline, schedule, runtime, seed, rest of the model
    assert se_backbone.pop('type') == 'SE' + base_backbone.pop('type')
    if se.startswith('mini/'):
        # The narrow mini models squeeze at ratio 4 rather than 16 (16 / 16 = 1 channel),
        # to the paper's floor(C / r) rather than the scope's multiples of 8.
        assert se_backbone.pop('se_ratio') == 4
        assert se_backbone.pop('se_cfg') == dict(divisor=1)
    assert se_backbone == base_backbone


@pytest.mark.parametrize('rel', [pair[1] for pair in PAIRS if 'places365' in pair[1]])
def test_places365_configs_have_365_classes_and_the_places365_data(rel):
    cfg = load(rel)
    assert cfg['model']['head']['num_classes'] == 365
    assert cfg['data_preprocessor']['num_classes'] == 365
    assert cfg['custom_imports']['imports'] == ['seplugin']  # registers Places365 too
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[loader]['dataset']['type'] == 'Places365'
    assert cfg['val_dataloader']['dataset']['split'] == 'val'
    if not rel.startswith('mini/'):
        # The paper trains on Places365-Challenge.
        assert cfg['train_dataloader']['dataset']['split'] == 'train-challenge'


def test_paper_pair_resnet152_places365():
    cfg = load('places365/seresnet152_8xb32_places365.py')
    assert cfg['model']['backbone']['type'] == 'SEResNet'
    assert cfg['model']['backbone']['depth'] == 152


@pytest.mark.parametrize('data', ['imagenet', 'places365'])
def test_mini_models_run_forward(data):
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    for rel in (f'mini/resnet18_mini_{data}.py', f'mini/seresnet18_mini_{data}.py'):
        cfg = Config.fromfile(str(CONFIGS / rel))
        model = MODELS.build(cfg.model).eval()
        with torch.no_grad():
            scores = model(torch.rand(2, 3, 32, 32), mode='tensor')
        assert scores.shape == (2, cfg.model.head.num_classes)
