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


def run_pair(data, work_dir, seeds):
    return subprocess.run(
        [sys.executable, 'tools/run_pair.py', 'configs/mini/resnet18_mini_imagenet.py',
         'configs/mini/seresnet18_mini_imagenet.py', '--seeds', *map(str, seeds),
         '--work-dir', str(work_dir), '--paper', 'imagenet-r50', '--cfg-options',
         'train_cfg.max_epochs=1', f'train_dataloader.dataset.data_root={data}',
         f'val_dataloader.dataset.data_root={data}',
         f'test_dataloader.dataset.data_root={data}'],
        capture_output=True, text=True)


def test_one_seed_each(data, tmp_path):
    result = run_pair(data, tmp_path, [0])
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for name in ('baseline', 'se'):
        assert (tmp_path / name / 'seed0' / 'epoch_1.pth').exists()
    # same seed, same options: the two configs differ only in the backbone
    assert '| accuracy/top1 |' in result.stdout
    assert 'not tested (needs >= 3 seeds each)' in result.stdout
    assert '| accuracy/top1 | 75.20 | 76.71 | +1.51 |' in result.stdout
    assert (tmp_path / 'compare' / 'metrics.png').exists()


@pytest.mark.slow
def test_two_seeds_give_a_noise_estimate(data, tmp_path):
    result = run_pair(data, tmp_path, [0, 1])
    assert result.returncode == 0, result.stderr[-2000:]
    rows = list(csv.DictReader(open(tmp_path / 'compare' / 'compare.csv')))
    assert rows[0]['se_n'] == rows[0]['baseline_n'] == '2'
    assert rows[0]['significant'] == 'not tested (needs >= 3 seeds each)'
