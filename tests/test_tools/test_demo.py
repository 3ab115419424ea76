"""tools/demo.py: the paper's protocol in miniature (pretrain both backbones with one recipe,
start both detectors from them through init_cfg), one progress line per run."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]


def load_demo():
    spec = importlib.util.spec_from_file_location('demo', REPO / 'tools' / 'demo.py')
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    return demo


def test_progress_line_from_mmengine_logs():
    demo = load_demo()
    assert demo.progress('11/30 13:20:28 - mmengine - INFO - Iter(train) [ 50/600]  '
                         'base_lr: 2.0000e-02 lr: 1.0000e-02  eta: 0:02:41  time: 0.2700  '
                         'data_time: 0.0100  memory: 0  loss: 1.2345  loss_rpn_cls: 0.5') \
        == 'iter 50/600  ETA 0:02:41  loss 1.2345'
    assert demo.progress('11/30 13:20:28 - mmengine - INFO - Epoch(train)  [5][8/8]  lr: '
                         '1.0000e-01  eta: 0:00:25  time: 0.1  data_time: 0.01  loss: 2.0553',
                         20) == 'epoch 5/20 iter 8/8  ETA 0:00:25  loss 2.0553'
    assert demo.progress('Epoch(val) [5][2/2]    accuracy/top1: 12.5') is None


def test_pretraining_then_detectors_from_its_checkpoints(tmp_path, monkeypatch):
    """Both backbones pretrain with one recipe, then each detector starts from its own
    backbone's checkpoint (same seed) through model.backbone.init_cfg.checkpoint; user
    options reach only their stage; one terminal line per run; compare gets the detectors."""
    demo = load_demo()
    monkeypatch.setattr(demo, 'data_options', lambda args: (['cls=1'], ['det=1']))
    steps = []

    def fake(step, logs):
        steps.append(step)
        print(f'{step.label}  done', flush=True)
        return f'{step.work_dir}/epoch_20.pth'

    monkeypatch.setattr(demo, 'train_and_test', fake)
    compared = []
    monkeypatch.setitem(sys.modules, 'compare', type(sys)('compare'))
    sys.modules['compare'].main = lambda argv: compared.append(argv) or 0
    monkeypatch.setattr(sys, 'path', list(sys.path))
    work = tmp_path / 'w'
    assert demo.main(['--work-dir', str(work), '--seeds', '0', '1', '--cfg-options',
                      'train_cfg.max_iters=5', '--pretrain-cfg-options',
                      'train_cfg.max_epochs=2']) == 0
    assert [(s.stage, s.model, s.seed) for s in steps] == [
        ('pretrain', 'baseline', 0), ('pretrain', 'se', 0),
        ('pretrain', 'baseline', 1), ('pretrain', 'se', 1),
        ('detect', 'baseline', 0), ('detect', 'se', 0),
        ('detect', 'baseline', 1), ('detect', 'se', 1)]
    for step in steps:
        config = demo.PRETRAIN[step.model] if step.stage == 'pretrain' else \
            demo.DETECT[step.model]
        assert step.config == config
        assert step.work_dir == f'{work}/{step.stage}/{step.model}/seed{step.seed}'
        if step.stage == 'pretrain':
            assert step.options == [f'randomness.seed={step.seed}', 'cls=1',
                                    'train_cfg.max_epochs=2']
        else:
            start = f'{work}/pretrain/{step.model}/seed{step.seed}/epoch_20.pth'
            assert step.options == [f'randomness.seed={step.seed}', 'det=1',
                                    'train_cfg.max_iters=5',
                                    f'model.backbone.init_cfg.checkpoint={start}']
    assert compared[0][:5] == ['--se', f'{work}/detect/se/seed0', f'{work}/detect/se/seed1',
                               '--baseline', f'{work}/detect/baseline/seed0']


def test_detector_configs_start_from_the_pretrained_backbones_like_the_coco_configs():
    from mmengine.config import Config
    demo = load_demo()
    for model in ('baseline', 'se'):
        init_cfg = Config.fromfile(demo.DETECT[model]).model.backbone.init_cfg
        assert init_cfg == dict(type='Pretrained', prefix='backbone.',
                                checkpoint=f'work_dirs/demo/pretrain/{model}/seed0/'
                                           'epoch_20.pth')
        # the pretraining config writes epoch_20.pth of the same backbone architecture
        pretrain = Config.fromfile(demo.PRETRAIN[model]).to_dict()
        detector = Config.fromfile(demo.DETECT[model]).model.backbone
        assert pretrain['train_cfg']['max_epochs'] == 20
        backbone = pretrain['model']['backbone']
        for key in ('type', 'depth', 'base_channels', 'se_ratio'):
            assert backbone.get(key) == detector.get(key), key


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    """The README's main job, unshortened: both detectors learn from pretrained backbones,
    the table shows each one's AP and each backbone's pretraining top-1."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, str(REPO / 'tools' / 'demo.py'), '--work-dir',
                             'w'], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ap = {}
    for model in ('baseline', 'se'):
        tests = sorted((tmp_path / 'w' / 'detect' / model / 'seed0').glob('*/*.json'))
        ap[model] = json.loads(tests[-1].read_text().splitlines()[-1])['coco/bbox_mAP']
    assert min(ap.values()) >= 0.2, ap
    assert (f"| coco/bbox_mAP | {100 * ap['baseline']:.2f} (n=1) | {100 * ap['se']:.2f} "
            f"(n=1) | {100 * (ap['se'] - ap['baseline']):+.2f} |") in result.stdout
    assert '(test top-1 of the run that wrote it)' in result.stdout
    assert len([line for line in result.stdout.splitlines() if 'done in' in line]) == 4
