"""The detection configs: each builds its model, each SE config differs from its baseline
only in the backbone or neck, and each starts from the published ImageNet checkpoint it
names (checked against the installed MMPretrain's metafiles and a checkpoint in its layout)."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from seplugin.checkpoint import DownloadError
from seplugin.zoo import mmpretrain_model

CONFIGS = Path(__file__).parents[2] / 'configs'
MMDET_CONFIGS = Path(__import__('mmdet').__file__).parent / '.mim' / 'configs'
MMPRETRAIN = Path(__import__('mmpretrain').__file__).parent / '.mim'


def detection_configs() -> list[Path]:
    """Every config under configs/ whose default scope is mmdet."""
    return sorted(path for path in CONFIGS.rglob('*.py')
                  if Config.fromfile(str(path)).get('default_scope') == 'mmdet')


DETECTION_CONFIGS = detection_configs()
# (SE config, its baseline, the model parts that may differ)
PAIRS = [
    ('faster_rcnn_se_r50_fpn_coco.py', 'faster_rcnn_r50_fpn_coco.py', {'backbone'}),
    ('faster_rcnn_se_r101_fpn_coco.py', 'faster_rcnn_r101_fpn_coco.py', {'backbone'}),
    ('faster_rcnn_r50_plus_neutral_se_fpn_coco.py', 'faster_rcnn_r50_fpn_coco.py',
     {'backbone'}),
    ('faster_rcnn_r101_plus_neutral_se_fpn_coco.py', 'faster_rcnn_r101_fpn_coco.py',
     {'backbone'}),
    ('faster_rcnn_r50_sefpn_coco.py', 'faster_rcnn_r50_fpn_coco.py', {'neck'}),
    ('faster_rcnn_se_r50_sefpn_coco.py', 'faster_rcnn_r50_fpn_coco.py', {'backbone', 'neck'}),
    ('mini/faster_rcnn_se_r18_fpn_minicoco.py', 'mini/faster_rcnn_r18_fpn_minicoco.py',
     {'backbone'}),
    ('mini/faster_rcnn_se_r18_fpn_minicoco_pretrained.py',
     'mini/faster_rcnn_r18_fpn_minicoco_pretrained.py', {'backbone'}),
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
        backbone, neck = (MODELS.get(inner(cfg.model[part])['type'])
                          for part in ('backbone', 'neck'))
    if cfg.model.backbone.type == 'SEBackbone':  # the wrapped class with SE inside
        assert isinstance(model.backbone, backbone) and type(model.backbone) is not backbone
    else:
        assert type(model.backbone) is backbone
    if cfg.model.neck.type in ('SENeck', 'SEFPN'):
        assert isinstance(model.neck, neck)
    else:
        assert type(model.neck) is neck
    if 'depth' in inner(cfg.model.backbone):
        assert model.backbone.depth == inner(cfg.model.backbone).depth


def inner(part: dict) -> dict:
    """The config of the module an SEBackbone or SENeck wraps, or the part itself."""
    return part.get('backbone') or part.get('neck') or part


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


# config -> the MMPretrain classifier its backbone starts from (paper protocol: SE from
# SE-ResNet, baselines from ResNet; the neutral-start configs from the baseline's ResNet)
STARTS = {
    'faster_rcnn_r50_fpn_coco.py': 'resnet50_8xb32_in1k',
    'faster_rcnn_r101_fpn_coco.py': 'resnet101_8xb32_in1k',
    'faster_rcnn_se_r50_fpn_coco.py': 'seresnet50_8xb32_in1k',
    'faster_rcnn_se_r101_fpn_coco.py': 'seresnet101_8xb32_in1k',
    'faster_rcnn_r50_sefpn_coco.py': 'resnet50_8xb32_in1k',
    'faster_rcnn_se_r50_sefpn_coco.py': 'seresnet50_8xb32_in1k',
    'faster_rcnn_r50_plus_neutral_se_fpn_coco.py': 'resnet50_8xb32_in1k',
    'faster_rcnn_r101_plus_neutral_se_fpn_coco.py': 'resnet101_8xb32_in1k',
}


def test_every_coco_config_names_its_starting_weights():
    coco = {str(p.relative_to(CONFIGS)) for p in DETECTION_CONFIGS if p.parent == CONFIGS}
    assert coco == set(STARTS)


@pytest.mark.parametrize('name, start', STARTS.items(), ids=list(STARTS))
def test_starting_weights_are_mmpretrains_published_checkpoints(name, start):
    """The URL (with its hash) is the one the installed MMPretrain's metafile publishes for
    that model, read through prefix='backbone.' as MMPretrain classifiers store it."""
    init_cfg = load(name)['model']['backbone']['init_cfg']
    published = mmpretrain_model(init_cfg['checkpoint'])
    assert published is not None, f'{init_cfg["checkpoint"]} is in no MMPretrain metafile'
    assert published['name'] == start
    assert init_cfg == dict(type='Pretrained', checkpoint=init_cfg['checkpoint'],
                            prefix='backbone.')


def test_each_url_is_named_once():
    """Every ImageNet checkpoint URL is spelled in configs/_base_/imagenet_weights.py only;
    a detector's own published weights (load_from) in the one config that starts from them."""
    spelled = {p.relative_to(CONFIGS).as_posix(): p.read_text()
               for p in CONFIGS.rglob('*.py') if 'https://' in p.read_text()}
    assert set(spelled) == {'_base_/imagenet_weights.py',
                            'se_anywhere/se-yolox_s_8xb8-300e_coco.py'}
    assert 'load_from' in spelled['se_anywhere/se-yolox_s_8xb8-300e_coco.py']


def mmpretrain_checkpoint(url: str, path: Path) -> dict:
    """A checkpoint in the layout of the published file: MMPretrain's own classifier, built
    from MMPretrain's own config, saved as its runner saves it."""
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
    published = mmpretrain_model(url)
    cfg = Config.fromfile(str(MMPRETRAIN / published['config']))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        classifier = PRETRAIN_MODELS.build(cfg.model)
    torch.manual_seed(0)
    for p in classifier.parameters():
        p.data.normal_(0, 0.1)
    state = classifier.state_dict()
    torch.save(dict(meta=dict(mmcls_version='0.15.0'), state_dict=state), path)
    return state


# Each builds two full-size networks and writes a full-size checkpoint: one in the default run.
@pytest.mark.parametrize('name', [
    'faster_rcnn_se_r50_fpn_coco.py',
    pytest.param('faster_rcnn_r50_fpn_coco.py', marks=pytest.mark.slow),
    pytest.param('faster_rcnn_r50_plus_neutral_se_fpn_coco.py', marks=pytest.mark.slow),
    pytest.param('faster_rcnn_r101_fpn_coco.py', marks=pytest.mark.slow),
    pytest.param('faster_rcnn_se_r101_fpn_coco.py', marks=pytest.mark.slow),
    pytest.param('faster_rcnn_r101_plus_neutral_se_fpn_coco.py', marks=pytest.mark.slow),
])
def test_backbone_loads_a_checkpoint_in_mmpretrains_layout(name, tmp_path):
    """Every backbone key comes from the checkpoint and every backbone key of the checkpoint
    finds its place; only the neutral-start configs leave SE layers to their own start."""
    from mmdet.registry import MODELS
    cfg = Config.fromfile(str(CONFIGS / name))
    init_cfg = cfg.model.backbone.init_cfg
    path = tmp_path / Path(init_cfg.checkpoint).name
    source = mmpretrain_checkpoint(init_cfg.checkpoint, path)
    given = {k.removeprefix('backbone.'): v for k, v in source.items()
             if k.startswith('backbone.')}
    init_cfg.checkpoint = str(path)
    with DefaultScope.overwrite_default_scope('mmdet'):
        backbone = MODELS.build(cfg.model.backbone)
    backbone.init_weights()
    state = backbone.state_dict()
    assert set(given) - set(state) == set()  # nothing unexpected
    missing = set(state) - set(given)
    scale = {}
    if 'neutral' in name:
        assert missing and all('.se_layer.' in k for k in missing)
        assert torch.all(backbone.layer2[0].se_layer.gate(torch.randn(1, 512, 3, 3)) == 0.5)
        # the constant gate 0.5 is divided out of each block's last BN
        scale = {k: 2.0 for k in given if k.endswith(('bn3.weight', 'bn3.bias'))}
    else:
        assert missing == set()
    for key, value in given.items():
        torch.testing.assert_close(state[key], value * scale.get(key, 1), rtol=0, atol=0,
                                   msg=key)


def test_offline_download_error_names_the_file_and_the_option(tmp_path, monkeypatch):
    """A URL that cannot be reached (here: a closed local port) fails with what to do."""
    from mmengine.runner.checkpoint import CheckpointLoader
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))  # no cached copy
    url = 'http://127.0.0.1:9/mmclassification/se-resnet50_batch256_imagenet_20200804-ae206104.pth'
    with pytest.raises(DownloadError) as err:
        CheckpointLoader.load_checkpoint(url, map_location='cpu')
    message = str(err.value)
    assert f'could not download the checkpoint {url} (URLError' in message
    assert f'wget {url}' in message
    assert (f'{tmp_path}/hub/checkpoints/se-resnet50_batch256_imagenet_20200804-ae206104.pth'
            in message)
    assert ('--cfg-options model.backbone.init_cfg.checkpoint='
            '/path/to/se-resnet50_batch256_imagenet_20200804-ae206104.pth') in message


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
    assert set(cfg.pop('imagenet_weights')) >= {'resnet50', 'resnet101'}
    # the one other change: MMPretrain's ImageNet ResNet instead of torchvision's
    assert cfg['model']['backbone'].pop('init_cfg')['prefix'] == 'backbone.'
    assert reference['model']['backbone'].pop('init_cfg')['checkpoint'].startswith(
        'torchvision://resnet')
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
