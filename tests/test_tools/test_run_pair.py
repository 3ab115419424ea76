"""tools/run_pair.py: baseline and SE trained and tested alike, then compared."""
import csv
import subprocess
import sys

import pytest

from seplugin.datasets.mini_cls import make_mini_imagenet


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('data') / 'mini_imagenet'
    make_mini_imagenet(str(root))
    return root


def run_pair(data, work_dir, seeds, *options):
    return subprocess.run(
        [sys.executable, 'tools/run_pair.py', 'configs/mini/resnet18_mini_imagenet.py',
         'configs/mini/seresnet18_mini_imagenet.py', '--seeds', *map(str, seeds),
         '--work-dir', str(work_dir), '--paper', 'imagenet-r50', '--cfg-options',
         'train_cfg.max_epochs=1', f'train_dataloader.dataset.data_root={data}',
         f'val_dataloader.dataset.data_root={data}',
         f'test_dataloader.dataset.data_root={data}', *options],
        capture_output=True, text=True)


@pytest.fixture(scope='module')
def first(data, tmp_path_factory):
    """One seed of each, run once in a work dir that the re-run test uses again."""
    work_dir = tmp_path_factory.mktemp('pair')
    return work_dir, run_pair(data, work_dir, [0])


def test_one_seed_each(first):
    work_dir, result = first
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for name in ('baseline', 'se'):
        assert (work_dir / name / 'seed0' / 'epoch_1.pth').exists()
    # same seed, same options: the two configs differ only in the backbone
    assert '| accuracy/top1 (primary) |' in result.stdout
    assert 'not tested (needs >= 3 pairs)' in result.stdout
    assert 'Test: paired t-test on the per-seed differences; runs paired by seed (0).' \
        in result.stdout
    assert '| accuracy/top1 | 75.20 | 76.71 | +1.51 |' in result.stdout
    assert (work_dir / 'compare' / 'metrics.png').exists()
    # the runs read are the ones made: one training and one test log dir each
    for name in ('baseline', 'se'):
        train, test = sorted(p.name for p in (work_dir / name / 'seed0').glob('2*_*'))
        assert f'seed0: train {train}, test {test}, seed 0' in result.stdout


def test_a_failed_rerun_in_the_same_work_dir_is_reported_as_failed(data, first):
    """The issue's case: the work dir holds the tested runs of before; this run fails.
    The table must not show the old numbers, for either model."""
    work_dir, before = first
    assert before.returncode == 0
    result = run_pair(data, work_dir, [0], 'model.backbone.depth=19')
    assert result.returncode == 1
    assert '| accuracy/top1' not in result.stdout
    assert 'No run was tested:' in result.stdout
    for name in ('baseline', 'se'):
        assert f"{work_dir / name / 'seed0'}: training failed (this invocation's runs: " \
            in result.stdout


@pytest.mark.slow
def test_two_seeds_give_a_noise_estimate(data, tmp_path):
    result = run_pair(data, tmp_path, [0, 1])
    assert result.returncode == 0, result.stderr[-2000:]
    rows = list(csv.DictReader(open(tmp_path / 'compare' / 'compare.csv')))
    assert rows[0]['se_n'] == rows[0]['baseline_n'] == '2'
    assert rows[0]['significant'] == 'not tested (needs >= 3 pairs)'
    assert rows[0]['p_value'] == ''
