"""The model zoo files (metafiles, model-index.yml, README table) match what the configs,
MMPretrain's metafiles and the paper's numbers give."""
import subprocess
import sys
from pathlib import Path

import mmpretrain
import yaml

ROOT = Path(__file__).parents[2]
# MMPretrain's own metafiles (model-index.yml), the reference the zoo must agree with
MMPRETRAIN_CONFIGS = Path(mmpretrain.__file__).parent / '.mim' / 'configs'
# As printed in MMPretrain's configs/{resnet,seresnet}/metafile.yml (ImageNet-1k, top-1)
PUBLISHED_TOP1 = {'resnet50_8xb32_in1k': 76.55, 'resnet101_8xb32_in1k': 77.97,
                  'seresnet50_8xb32_in1k': 77.74, 'seresnet101_8xb32_in1k': 78.26}


def published(name: str) -> dict:
    """MMPretrain's metafile entry of a model, found by its name (seplugin.zoo looks up
    weights URLs instead): its weights and ImageNet-1k top-1."""
    for path in MMPRETRAIN_CONFIGS.glob('*/metafile.yml'):
        for model in yaml.safe_load(path.read_text()).get('Models') or []:
            if model['Name'] == name:
                top1 = [r['Metrics']['Top 1 Accuracy'] for r in model['Results']
                        if r['Dataset'] == 'ImageNet-1k']
                return dict(weights=model['Weights'], top1=top1[0])
    raise AssertionError(f'{name} is in no metafile under {MMPRETRAIN_CONFIGS}')


def test_files_are_in_sync():
    result = subprocess.run([sys.executable, 'tools/model_zoo.py', '--check'],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_every_config_is_listed_with_mmpretrains_top1_and_no_result_of_ours():
    index = yaml.safe_load((ROOT / 'model-index.yml').read_text())
    listed = {}
    for path in index['Import']:
        for model in yaml.safe_load((ROOT / path).read_text())['Models']:
            listed[model['Config']] = model
    configs = {str(p.relative_to(ROOT)) for p in ROOT.glob('configs/*.py')} | {
        str(p.relative_to(ROOT)) for folder in ('imagenet', 'places365', 'se_anywhere')
        for p in ROOT.glob(f'configs/{folder}/*.py')}
    assert set(listed) == configs
    for config, model in listed.items():
        assert model['Results'] == [], f'{config}: seplugin has produced no result yet'
        pretrained = model['Metadata'].get('Pretrained')
        if pretrained:
            reference = published(pretrained['Name'])
            assert pretrained['Weights'] == reference['weights'], config
            assert pretrained['ImageNet-1k Top 1 Accuracy'] == reference['top1'] == \
                PUBLISHED_TOP1[pretrained['Name']], config
    se = listed['configs/faster_rcnn_se_r50_fpn_coco.py']['Metadata']
    assert se['Paper Reference']['Metrics']['box AP'] == 40.4
    assert se['Paper Reference']['Source'].startswith('Hu et al.')
    assert se['Pretrained']['ImageNet-1k Top 1 Accuracy'] == 77.74
    base = listed['configs/faster_rcnn_r50_fpn_coco.py']['Metadata']
    assert base['Paper Reference']['Metrics']['box AP'] == 38.0
