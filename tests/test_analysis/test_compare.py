"""tools/compare.py on work dirs written by real (tiny) mmengine runs: which runs it reads,
and the statistics it makes, against scipy and hand-computed values."""
import csv
import json
import subprocess
import sys

import pytest
from scipy import stats
from toy import make_runner

from seplugin.analysis.compare import (
    compare,
    holm,
    log_dirs,
    markdown,
    read_run,
    report,
    starting_weights,
)

TOOLS = 'tools/compare.py'


def trained(work_dir, seed, test=True):
    """Train 4 iterations with validation every 2, then (optionally) test the checkpoint."""
    make_runner(work_dir, max_iters=4, seed=seed, val_interval=2).train()
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
    # the training run (curves) and the test run (metrics), each by its log dir
    train, test = log_dirs(runs['se'][0])[0], log_dirs(runs['se'][0])[-1]
    assert (run.train_run, run.test_run) == (train, test)
    assert run.which == f'train {train}, test {test}'
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
    def __init__(self, top1, top5=90.0, seed=None):
        self.metrics = {'accuracy/top1': top1, 'accuracy/top5': top5}
        self.seed = seed


def fake(*values):
    return [R(v) for v in values]


def seeded(*values):
    """Runs of seeds 0, 1, ... in this order."""
    return [R(v, seed=i) for i, v in enumerate(values)]


def test_two_seeds_are_never_significant():
    """The case of the issue: 5 points apart, 0.07 std; with 2 seeds no verdict."""
    rows = compare(fake(45.0, 45.1), fake(40.0, 40.1), 'classification')
    top1 = rows[0]
    assert (top1['se_mean'], top1['baseline_mean']) == pytest.approx((45.05, 40.05))
    assert top1['delta'] == pytest.approx(5.0)
    assert top1['significant'] == 'not tested (needs >= 3 seeds each)'
    assert top1['p_value'] is top1['t'] is top1['test'] is None
    # the interval is still given: Welch's, from the t distribution with ~2 d.o.f.
    welch = stats.ttest_ind([45.0, 45.1], [40.0, 40.1], equal_var=False)
    assert top1['delta_ci'] == pytest.approx(tuple(welch.confidence_interval(0.95)),
                                             rel=1e-9)
    # by hand: equal variances and sizes give df = 2, half width t(0.975, 2) * sqrt(2 s2/2)
    half = stats.t.ppf(0.975, 2) * (2 * 0.005 / 2) ** 0.5
    assert top1['delta_ci'] == pytest.approx((5.0 - half, 5.0 + half), rel=1e-9)
    single = compare(fake(76.0), fake(74.0), 'classification')
    assert single[0]['significant'] == 'not tested (needs >= 3 seeds each)'
    assert single[0]['delta_ci'] is None and single[0]['se_ci'] is None


def test_three_seeds_welch_matches_scipy():
    se, base = [76.1, 76.9, 76.4], [75.0, 75.9, 74.6]
    top1 = compare(fake(*se), fake(*base), 'classification')[0]
    reference = stats.ttest_ind(se, base, equal_var=False)
    assert top1['test'] == 'Welch t' and top1['role'] == 'primary'
    assert top1['t'] == pytest.approx(reference.statistic, rel=1e-12)
    assert top1['df'] == pytest.approx(reference.df, rel=1e-12)
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
    top5 = compare(fake(*se), fake(*base), 'classification')[1]
    assert top5['significant'] == 'not tested (no seed-to-seed variation)'
    assert top5['p_value'] is None


def test_paired_runs_get_the_paired_test_on_per_seed_differences():
    """Seed i of SE pairs with seed i of the baseline, whatever order the runs come in."""
    se, base = [76.1, 76.9, 76.4], [75.0, 75.9, 74.6]
    top1 = compare(list(reversed(seeded(*se))), seeded(*base), 'classification',
                   paired=True)[0]
    reference = stats.ttest_rel(se, base)
    assert top1['test'] == 'paired t' and top1['df'] == 2
    assert top1['t'] == pytest.approx(reference.statistic, rel=1e-12)
    assert top1['p_value'] == pytest.approx(reference.pvalue, rel=1e-9)
    assert top1['delta_ci'] == pytest.approx(tuple(reference.confidence_interval(0.95)),
                                             rel=1e-9)
    # by hand: differences 1.1, 1.0, 1.8, mean 1.3, t = mean / (sd / sqrt(3))
    d = [1.1, 1.0, 1.8]
    assert top1['t'] == pytest.approx(1.3 / (stats.tstd(d) / 3 ** 0.5), rel=1e-9)
    # the pairing matters: Welch on the same numbers gives another p
    assert top1['p_value'] != pytest.approx(stats.ttest_ind(se, base,
                                                            equal_var=False).pvalue)
    assert top1['significant'].startswith(('yes (p = ', 'no (p = '))
    assert 'paired t = ' in top1['significant']


def test_holm_matches_a_hand_computed_example():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> monotone
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # 0.5 * 2 capped at 1; never below the step before
    assert holm([0.02]) == [0.02]
    assert holm([]) == []


def test_secondary_metrics_are_holm_corrected_and_the_primary_is_not():
    """Detection: box AP is primary; AP50 and AP75 (tested) are corrected together."""
    def det(values, seeds):
        runs = []
        for (ap, ap50, ap75), seed in zip(values, seeds):
            run = R(0, seed=seed)
            run.metrics = {'coco/bbox_mAP': ap, 'coco/bbox_mAP_50': ap50,
                           'coco/bbox_mAP_75': ap75}
            runs.append(run)
        return runs
    se = [(40.1, 61.0, 43.0), (40.9, 61.9, 43.5), (40.4, 60.5, 44.1)]
    base = [(38.0, 58.0, 41.0), (38.3, 59.5, 41.4), (37.6, 58.9, 40.2)]
    rows = compare(det(se, [0, 1, 2]), det(base, [0, 1, 2]), 'detection', paired=True)
    assert [r['role'] for r in rows] == ['primary', 'secondary', 'secondary']
    raw = [stats.ttest_rel([s[i] for s in se], [b[i] for b in base]).pvalue for i in range(3)]
    assert [r['p_value'] for r in rows] == pytest.approx(raw, rel=1e-9)
    assert rows[0]['p_holm'] is None
    low, high = sorted(raw[1:])
    expected = {raw.index(low): 2 * low, raw.index(high): max(2 * low, high)}
    assert [rows[1]['p_holm'], rows[2]['p_holm']] == pytest.approx(
        [min(1, expected[1]), min(1, expected[2])], rel=1e-9)
    assert rows[1]['significant'].startswith(('yes (Holm p = ', 'no (Holm p = '))
    text = markdown(rows, None, [], method='Test: paired')
    assert '| coco/bbox_mAP (primary) |' in text and '(Holm ' in text


def test_no_p_value_is_written_where_no_test_is_made(tmp_path):
    rows = compare(seeded(45.0, 45.3), seeded(40.0, 40.1), 'classification', paired=True)
    assert rows[0]['significant'] == 'not tested (needs >= 3 pairs)'
    text = markdown(rows, None, [])
    assert text.splitlines()[2].split('|')[5].strip() == ''  # the p column
    from seplugin.analysis.compare import write_csv
    write_csv(rows, tmp_path / 'c.csv')
    row = next(csv.DictReader(open(tmp_path / 'c.csv')))
    assert row['p_value'] == row['t'] == row['df'] == row['test'] == row['p_holm'] == ''
    assert row['delta_ci_low'] != ''  # the interval is no test


def write_run(work_dir, ts, losses=None, metrics=None, seed=None):
    """One log dir as mmengine writes it: a training run's scalars or a test run's json."""
    log = work_dir / ts
    (log / 'vis_data').mkdir(parents=True)
    if losses is not None:
        (log / 'vis_data' / 'scalars.json').write_text(''.join(
            json.dumps(dict(loss=loss, step=i + 1)) + '\n' for i, loss in enumerate(losses)))
    if metrics is not None:
        (log / f'{ts}.json').write_text(json.dumps(metrics) + '\n')
    if seed is not None:
        (log / 'vis_data' / 'config.py').write_text(f'randomness = dict(seed={seed})\n')


def test_a_failed_rerun_in_the_same_work_dir_is_not_shown_with_old_numbers(tmp_path, capsys):
    """The issue's case: a work dir of a tested run is used again and the new training
    fails. The old test results must not stand for it, nor mix with its curves."""
    work = tmp_path / 'se'
    write_run(work, '20260101_100000', losses=[2.0, 1.0])
    write_run(work, '20260101_110000', metrics={'accuracy/top1': 80.0, 'accuracy/top5': 99.})
    write_run(work, '20260102_090000', losses=[3.0])  # the re-run, failed after one step
    run = read_run(str(work), 'classification')
    assert run.source == '' and run.metrics == {} and run.test_run is None
    assert run.problem == ('its newest training run 20260102_090000 has no test run after '
                           'it; the test results of 20260101_110000 are of an earlier '
                           'training')
    assert [line['loss'] for line in run.train] == [3.0]  # its own curve, not mixed
    base = tmp_path / 'base'
    write_run(base, '20260101_100000', losses=[2.0])
    write_run(base, '20260101_110000', metrics={'accuracy/top1': 70.0, 'accuracy/top5': 99.})
    assert report([run], [read_run(str(base), 'classification')], 'classification',
                  str(tmp_path / 'out')) == 1
    text = capsys.readouterr().out
    assert '80.00' not in text and '| accuracy/top1' not in text
    assert f'- {work}: its newest training run 20260102_090000 has no test run' in text


def test_each_work_dir_says_which_runs_it_read_and_pairs_by_recorded_seed(tmp_path, capsys):
    se, base = [76.1, 76.9, 76.4], [75.0, 75.9, 74.6]
    dirs = {}
    for name, values in (('se', se), ('base', base)):
        for seed, top1 in enumerate(values):
            work = tmp_path / f'{name}{seed}'
            write_run(work, '20260101_100000', losses=[1.0], seed=seed)
            write_run(work, '20260101_110000', seed=seed,
                      metrics={'accuracy/top1': top1, 'accuracy/top5': 99.0})
            dirs.setdefault(name, []).append(str(work))
    runs = {n: [read_run(d, 'classification') for d in ds] for n, ds in dirs.items()}
    assert [r.seed for r in runs['se']] == [0, 1, 2]
    assert report(runs['se'], runs['base'], 'classification', str(tmp_path / 'out')) == 0
    text = capsys.readouterr().out
    assert 'Test: paired t-test on the per-seed differences; runs paired by seed (0, 1, 2).' \
        in text
    assert f'- SE {dirs["se"][0]}: train 20260101_100000, test 20260101_110000, seed 0' in text
    p = stats.ttest_rel(se, base).pvalue
    assert f'| {p:.3f} |' in text
    # without the seeds on record the runs are not paired: Welch, and it says why
    for run in runs['se'] + runs['base']:
        run.seed = None
    report(runs['se'], runs['base'], 'classification', str(tmp_path / 'out'))
    text = capsys.readouterr().out
    assert "Test: Welch's t-test (unequal variances); runs not paired: a run records no " \
        'seed.' in text
    assert f"| {stats.ttest_ind(se, base, equal_var=False).pvalue:.3f} |" in text


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
    """A published URL gets MMPretrain's top-1; a local checkpoint gets the top-1 of the
    test run that tested exactly it (its saved load_from), not of a newer test."""
    from seplugin.zoo import mmpretrain_model
    url = ('https://download.openmmlab.com/mmclassification/v0/se-resnet/'
           'se-resnet50_batch256_imagenet_20200804-ae206104.pth')
    classifier_dir = tmp_path / 'cls'
    for ts, top1, tested in (('20260101_000000', 62.5, 'epoch_20.pth'),
                             ('20260101_010000', 12.5, 'epoch_10.pth')):
        write_run(classifier_dir, ts, metrics={'accuracy/top1': top1, 'accuracy/top5': 100.})
        (classifier_dir / ts / 'vis_data' / 'config.py').write_text(
            f"load_from = '{classifier_dir / tested}'\n")
    for name, checkpoint in (('det_url', url), ('det_local', classifier_dir / 'epoch_20.pth'),
                             ('det_scratch', None)):
        vis = tmp_path / name / '20260101_000000' / 'vis_data'
        vis.mkdir(parents=True)
        init = 'None' if checkpoint is None else \
            f"dict(type='Pretrained', checkpoint='{checkpoint}', prefix='backbone.')"
        (vis / 'config.py').write_text(f'model = dict(backbone=dict(init_cfg={init}))\n')
    assert starting_weights(str(tmp_path / 'det_url')) == dict(
        checkpoint='seresnet50_8xb32_in1k', top1=77.74, of='MMPretrain metafile, ImageNet-1k')
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
