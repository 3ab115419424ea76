"""The model zoo files (metafiles, model-index.yml, README table) match what the configs,
MMPretrain's metafiles and the paper's numbers give."""
import subprocess
import sys
from pathlib import Path

import yaml

from seplugin.zoo import mmpretrain_model

ROOT = Path(__file__).parents[2]


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
        str(p.relative_to(ROOT)) for folder in ('imagenet', 'places365')
        for p in ROOT.glob(f'configs/{folder}/*.py')}
    assert set(listed) == configs
    for config, model in listed.items():
        assert model['Results'] == [], f'{config}: seplugin has produced no result yet'
        pretrained = model['Metadata']['Pretrained']
        if pretrained:
            published = mmpretrain_model(pretrained['Weights'])
            assert pretrained['ImageNet-1k Top 1 Accuracy'] == published['top1']
    se = listed['configs/faster_rcnn_se_r50_fpn_coco.py']['Metadata']
    assert se['Paper Reference']['Metrics']['box AP'] == 40.4
    assert se['Paper Reference']['Source'].startswith('Hu et al.')
    assert se['Pretrained']['ImageNet-1k Top 1 Accuracy'] == 77.74
    base = listed['configs/faster_rcnn_r50_fpn_coco.py']['Metadata']
    assert base['Paper Reference']['Metrics']['box AP'] == 38.0
