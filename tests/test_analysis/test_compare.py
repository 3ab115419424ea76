"""tools/compare.py on work dirs written by real (tiny) mmengine runs."""
import csv
import subprocess
import sys

import pytest
from toy import ToyAccuracy, ToyData, make_runner

from seplugin.analysis.compare import compare, read_run

TOOLS = 'tools/compare.py'


def trained(work_dir, seed, test=True):
    """Train 4 iterations with validation every 2, then (optionally) test the checkpoint."""
    loader = dict(dataset=ToyData(), sampler=dict(type='DefaultSampler', shuffle=False),
                  batch_size=4, num_workers=0)
    make_runner(work_dir, max_iters=4, seed=seed, val_interval=2, val_dataloader=loader,
                val_evaluator=[ToyAccuracy()], val_cfg=dict()).train()
    if test:
        make_runner(work_dir, max_iters=4, load_from=str(work_dir / 'iter_4.pth')).test()
    return str(work_dir)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp('runs')
    return dict(se=[trained(root / f'se{s}', s) for s in (0, 1)],
                baseline=[trained(root / f'base{s}', s) for s in (0, 1)],
                partial=trained(root / 'partial', 0, test=False))


def test_reads_test_results_and_curves(runs):
    run = read_run(runs['se'][0], 'classification')
    assert run.source == 'test' and not run.problem
    assert set(run.metrics) == {'accuracy/top1', 'accuracy/top5'}
    assert [r['step'] for r in run.train] == [1, 2, 3, 4]
    assert [r['step'] for r in run.val] == [2, 4]


def test_partial_run_falls_back_to_validation(runs):
    run = read_run(runs['partial'], 'classification')
    assert run.source == 'val'
    assert run.metrics['accuracy/top1'] == run.val[-1]['accuracy/top1']


def test_coco_size_range_without_objects_is_left_out(tmp_path):
    """COCOeval's -1 (no large objects in the val set) is no AP of -100%."""
    (tmp_path / '20260101_000000').mkdir()
    (tmp_path / '20260101_000000' / '20260101_000000.json').write_text(
        '{"coco/bbox_mAP": 0.5, "coco/bbox_mAP_s": 0.25, "coco/bbox_mAP_l": -1.0}\n')
    run = read_run(str(tmp_path), 'detection')
    assert run.source == 'test'
    assert run.metrics == {'coco/bbox_mAP': 50.0, 'coco/bbox_mAP_s': 25.0}


def test_mean_std_delta_and_noise():
    class R:
        def __init__(self, v):
            self.metrics = {'accuracy/top1': v, 'accuracy/top5': 90.0}
    rows = compare([R(76.0), R(77.0)], [R(74.0), R(75.0)], 'classification')
    top1 = rows[0]
    assert (top1['se_mean'], top1['baseline_mean'], top1['delta']) == (76.5, 74.5, 2.0)
    assert top1['se_std'] == pytest.approx(0.7071, abs=1e-4)
    assert top1['exceeds_noise'] == 'yes (2 s.e. = 1.41)'
    assert rows[1]['exceeds_noise'].startswith('no')  # identical top-5
    single = compare([R(76.0)], [R(74.0)], 'classification')
    assert single[0]['exceeds_noise'] == 'unknown (needs >= 2 seeds each)'


def test_cli_writes_tables_plots_and_lists_missing_runs(runs, tmp_path):
    out = tmp_path / 'out'
    result = subprocess.run(
        [sys.executable, TOOLS, '--se', *runs['se'], '--baseline', *runs['baseline'],
         runs['partial'], str(tmp_path / 'never_ran'), '--paper', 'imagenet-r50',
         '--out-dir', str(out)], capture_output=True, text=True, check=True)
    text = result.stdout
    assert '| accuracy/top1 |' in text and '(n=2)' in text and '(n=3)' in text
    assert 'Paper (ImageNet val' in text and '| accuracy/top1 | 75.20 | 76.71 | +1.51 |' in text
    assert f'{tmp_path}/never_ran: work dir does not exist' in text
    assert 'partial: metrics from the last validation, no test results' in text
    rows = list(csv.DictReader(open(out / 'compare.csv')))
    assert [r['metric'] for r in rows] == ['accuracy/top1', 'accuracy/top5']
    for png in ('metrics.png', 'curves.png'):
        assert (out / png).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
