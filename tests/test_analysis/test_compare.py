"""tools/compare.py on work dirs written by real (tiny) mmengine runs."""
import csv
import subprocess
import sys

import pytest
from scipy import stats
from toy import ToyAccuracy, ToyData, make_runner

from seplugin.analysis.compare import compare, markdown, read_run, starting_weights

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


class R:
    def __init__(self, top1, top5=90.0):
        self.metrics = {'accuracy/top1': top1, 'accuracy/top5': top5}


def fake(*values):
    return [R(v) for v in values]


def test_two_seeds_are_never_significant():
    """The case of the issue: 5 points apart, 0.07 std; with 2 seeds no verdict."""
    rows = compare(fake(45.0, 45.1), fake(40.0, 40.1), 'classification')
    top1 = rows[0]
    assert (top1['se_mean'], top1['baseline_mean']) == pytest.approx((45.05, 40.05))
    assert top1['delta'] == pytest.approx(5.0)
    assert top1['significant'] == 'not tested (needs >= 3 seeds each)'
    # the interval is still given, from the t distribution with ~2 d.o.f.
    assert top1['delta_ci'] is not None
    single = compare(fake(76.0), fake(74.0), 'classification')
    assert single[0]['significant'] == 'not tested (needs >= 3 seeds each)'
    assert single[0]['delta_ci'] is None and single[0]['se_ci'] is None


def test_three_seeds_welch_matches_scipy():
    se, base = [76.1, 76.9, 76.4], [75.0, 75.9, 74.6]
    top1 = compare(fake(*se), fake(*base), 'classification')[0]
    reference = stats.ttest_ind(se, base, equal_var=False)
    assert top1['welch_t'] == pytest.approx(reference.statistic, rel=1e-12)
    assert top1['welch_df'] == pytest.approx(reference.df, rel=1e-12)
    assert top1['p_value'] == pytest.approx(reference.pvalue, rel=1e-9)
    low, high = reference.confidence_interval(0.95)
    assert top1['delta_ci'] == pytest.approx((low, high), rel=1e-9)
    mean_low, mean_high = stats.t.interval(0.95, 2, loc=stats.tmean(se), scale=stats.sem(se))
    assert top1['se_ci'] == pytest.approx((mean_low, mean_high), rel=1e-12)
    expected = 'yes' if reference.pvalue < 0.05 else 'no'
    assert top1['significant'] == (f'{expected} (p = {reference.pvalue:.3f}, Welch t = '
                                   f'{reference.statistic:.2f}, df = {reference.df:.1f})')
    # a 1-point gap inside seed noise of 1 point is not significant with 3 seeds
    noisy = compare(fake(76.0, 77.5, 75.5), fake(75.0, 76.5, 74.5), 'classification')[0]
    assert noisy['significant'].startswith('no (p = ')
    # identical top-5 everywhere: no variation, no test
    assert compare(fake(*se), fake(*base), 'classification')[1]['significant'] == \
        'not tested (no seed-to-seed variation)'


def test_table_labels_the_paper_and_the_starting_weights():
    rows = compare(fake(45.0, 45.1), fake(40.0, 40.1), 'classification')
    weights = {'baseline': [dict(checkpoint='resnet50_8xb32_in1k', top1=76.55,
                                 of='MMPretrain metafile, ImageNet-1k')],
               'se': [None]}
    text = markdown(rows, 'coco-r50', [], weights)
    assert '| baseline | resnet50_8xb32_in1k | 76.55 (MMPretrain metafile, ImageNet-1k) |' \
        in text
    assert "The paper's result (Hu et al., Faster R-CNN, COCO minival, Table 7)" in text
    assert "The paper's detectors started from ImageNet top-1 75.20 (baseline) and 76.71" \
        in text


def test_starting_weights_from_the_saved_config(tmp_path):
    """A published URL gets MMPretrain's top-1; a local checkpoint written by a tested
    classification run gets that run's top-1."""
    from seplugin.zoo import mmpretrain_model
    url = ('https://download.openmmlab.com/mmclassification/v0/se-resnet/'
           'se-resnet50_batch256_imagenet_20200804-ae206104.pth')
    classifier_dir = tmp_path / 'cls'
    (classifier_dir / '20260101_000000').mkdir(parents=True)
    (classifier_dir / '20260101_000000' / '20260101_000000.json').write_text(
        '{"accuracy/top1": 62.5, "accuracy/top5": 100.0}\n')
    for name, checkpoint in (('det_url', url), ('det_local', classifier_dir / 'epoch_20.pth'),
                             ('det_scratch', None)):
        vis = tmp_path / name / '20260101_000000' / 'vis_data'
        vis.mkdir(parents=True)
        init = 'None' if checkpoint is None else \
            f"dict(type='Pretrained', checkpoint='{checkpoint}', prefix='backbone.')"
        (vis / 'config.py').write_text(f'model = dict(backbone=dict(init_cfg={init}))\n')
    assert starting_weights(str(tmp_path / 'det_url')) == dict(
        checkpoint='seresnet50_8xb32_in1k', top1=mmpretrain_model(url)['top1'],
        of='MMPretrain metafile, ImageNet-1k')
    assert mmpretrain_model(url)['top1'] == 77.74
    assert starting_weights(str(tmp_path / 'det_local')) == dict(
        checkpoint=str(classifier_dir / 'epoch_20.pth'), top1=62.5,
        of='test top-1 of the run that wrote it')
    assert starting_weights(str(tmp_path / 'det_scratch'))['top1'] is None
    assert starting_weights(str(tmp_path / 'never_ran')) is None


def test_cli_writes_tables_plots_and_lists_missing_runs(runs, tmp_path):
    out = tmp_path / 'out'
    result = subprocess.run(
        [sys.executable, TOOLS, '--se', *runs['se'], '--baseline', *runs['baseline'],
         runs['partial'], str(tmp_path / 'never_ran'), '--paper', 'imagenet-r50',
         '--out-dir', str(out)], capture_output=True, text=True, check=True)
    text = result.stdout
    # the validated-only run is listed, not averaged in: n=2 for both
    assert '| accuracy/top1 |' in text and '(n=2)' in text and '(n=3)' not in text
    assert 'not tested (needs >= 3 seeds each)' in text
    assert "The paper's result (Hu et al., ImageNet val" in text
    assert '| accuracy/top1 | 75.20 | 76.71 | +1.51 |' in text
    assert f'{tmp_path}/never_ran: work dir does not exist' in text
    assert 'partial: no test results (only validation metrics' in text
    rows = list(csv.DictReader(open(out / 'compare.csv')))
    assert [r['metric'] for r in rows] == ['accuracy/top1', 'accuracy/top5']
    assert rows[0]['baseline_n'] == '2' and {'delta_ci_low', 'se_ci_high'} <= set(rows[0])
    assert 'Starting weights' not in text  # toy runs save no config
    for png in ('metrics.png', 'curves.png'):
        assert (out / png).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
