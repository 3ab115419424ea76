"""tools/demo.py: the paper's protocol in miniature (pretrain both backbones with one recipe,
start both detectors from them through init_cfg), one progress line per run."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tool_runs import load_tool

REPO = Path(__file__).parents[2]


def test_progress_line_from_mmengine_logs():
    from seplugin.engine.pairs import progress
    assert progress('11/30 13:20:28 - mmengine - INFO - Iter(train) [ 50/600]  '
                    'base_lr: 2.0000e-02 lr: 1.0000e-02  eta: 0:02:41  time: 0.2700  '
                    'data_time: 0.0100  memory: 0  loss: 1.2345  loss_rpn_cls: 0.5') \
        == 'iter 50/600  ETA 0:02:41  loss 1.2345'
    assert progress('11/30 13:20:28 - mmengine - INFO - Epoch(train)  [5][8/8]  lr: '
                    '1.0000e-01  eta: 0:00:25  time: 0.1  data_time: 0.01  loss: 2.0553',
                    20) == 'epoch 5/20 iter 8/8  ETA 0:00:25  loss 2.0553'
    assert progress('Epoch(val) [5][2/2]    accuracy/top1: 12.5') is None


def test_pretraining_then_detectors_from_its_checkpoints(tmp_path, monkeypatch):
    """Both backbones pretrain with one recipe, then each detector starts from its own
    backbone's checkpoint (same seed) through model.backbone.init_cfg.checkpoint; user
    options reach only their stage; compare gets exactly the detectors' records, a detector
    whose pretraining failed among them as not run."""
    from seplugin.engine import demo as engine
    from seplugin.engine.pairs import TESTED, Record
    demo = load_tool('demo')
    monkeypatch.setattr(engine, 'data_options', lambda *roots: (['cls=1'], ['det=1']))
    steps = []

    def fake(job, log, tools, max_epochs=None):
        steps.append((job, log))
        failed = (job.work_dir.endswith('pretrain/se/seed1'))
        return Record(job, status='training failed' if failed else TESTED,
                      checkpoint=f'{job.work_dir}/epoch_20.pth', train_run='t', test_run='u')

    compared = []
    monkeypatch.setattr(engine, 'compare_records',
                        lambda records, out_dir, task: compared.append(records) or 0)
    work = tmp_path / 'w'
    assert engine.run_demo(demo.PRETRAIN, demo.DETECT, [0, 1], str(work), demo.TOOLS,
                           cfg_options=['train_cfg.max_iters=5'],
                           pretrain_cfg_options=['train_cfg.max_epochs=2'], step=fake) == 0
    stage = lambda job: job.work_dir.split('/')[-3]  # noqa: E731
    assert [(stage(j), j.name, j.seed) for j, _ in steps] == [
        ('pretrain', 'baseline', 0), ('pretrain', 'se', 0),
        ('pretrain', 'baseline', 1), ('pretrain', 'se', 1),
        ('detect', 'baseline', 0), ('detect', 'se', 0),
        ('detect', 'baseline', 1)]  # SE seed 1 has no pretrained backbone
    for job, log in steps:
        config = demo.PRETRAIN[job.name] if stage(job) == 'pretrain' else demo.DETECT[job.name]
        assert job.config == config
        assert job.work_dir == f'{work}/{stage(job)}/{job.name}/seed{job.seed}'
        assert log == f'{work}/logs/{stage(job)}_{job.name}_seed{job.seed}.log'
        if stage(job) == 'pretrain':
            assert job.options == ['cls=1', 'train_cfg.max_epochs=2']
        else:
            start = f'{work}/pretrain/{job.name}/seed{job.seed}/epoch_20.pth'
            assert job.options == ['det=1', 'train_cfg.max_iters=5',
                                   f'model.backbone.init_cfg.checkpoint={start}']
    records = compared[0]
    assert [(r.job.name, r.job.seed, r.status) for r in records] == [
        ('baseline', 0, TESTED), ('se', 0, TESTED), ('baseline', 1, TESTED),
        ('se', 1, 'not run: its pretraining failed')]


def test_detector_configs_start_from_the_pretrained_backbones_like_the_coco_configs():
    from mmengine.config import Config
    demo = load_tool('demo')
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
    assert (f"| coco/bbox_mAP (primary) | {100 * ap['baseline']:.2f} (n=1) | "
            f"{100 * ap['se']:.2f} "
            f"(n=1) | {100 * (ap['se'] - ap['baseline']):+.2f} |") in result.stdout
    assert '(test top-1 of the run that wrote it)' in result.stdout
    assert len([line for line in result.stdout.splitlines() if 'done in' in line]) == 4
