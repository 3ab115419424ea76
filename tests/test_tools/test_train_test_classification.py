"""tools/train.py then tools/test.py on the mini classification configs, as a user runs them.

Each run is a subprocess on data generated into a temporary folder. The default run trains
the two SE configs for one epoch on a smaller generated set; ``pytest -m slow`` trains all
four for their full schedule and checks the accuracy.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from seplugin.datasets.mini_cls import make_mini_imagenet, make_mini_places365

REPO = Path(__file__).parents[2]
MAKE = {'imagenet': make_mini_imagenet, 'places365': make_mini_places365}
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def run(*args: str) -> None:
    """Run a python script of the repository; fail with the end of its output."""
    result = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-4000:]
        pytest.fail(f'{" ".join(args)} exited with {result.returncode}:\n{output}')


def train_and_test(config: str, data_root: Path, work_dir: Path,
                   train_options: tuple[str, ...] = ()) -> dict[str, float]:
    """Train ``config`` with tools/train.py, evaluate its checkpoint with tools/test.py.

    Returns:
        dict[str, float]: The metrics tools/test.py wrote (``accuracy/top1``, ...).
    """
    data_options = [f'{loader}.dataset.data_root={data_root}' for loader in LOADERS]
    run('tools/train.py', f'configs/mini/{config}', '--work-dir', str(work_dir / 'train'),
        '--cfg-options', *data_options, *train_options)
    checkpoint = (work_dir / 'train' / 'last_checkpoint').read_text().strip()
    assert Path(checkpoint).is_file()
    run('tools/test.py', f'configs/mini/{config}', checkpoint,
        '--work-dir', str(work_dir / 'test'), '--cfg-options', *data_options)
    # The runner writes the metrics to <work dir>/<timestamp>/<timestamp>.json
    [metrics_file] = (work_dir / 'test').glob('*/*.json')
    return json.loads(metrics_file.read_text())


@pytest.mark.parametrize('data', ['imagenet', 'places365'])
def test_se_config_trains_one_epoch_and_evaluates(data, tmp_path):
    data_root = tmp_path / data
    MAKE[data](str(data_root), train_per_class=4, val_per_class=2)
    metrics = train_and_test(f'seresnet18_mini_{data}.py', data_root, tmp_path,
                             ('train_cfg.max_epochs=1',))
    # One epoch of 32 images learns little; this checks the evaluation, not the accuracy.
    assert 0 <= metrics['accuracy/top1'] <= metrics['accuracy/top5'] <= 100


@pytest.mark.slow
@pytest.mark.parametrize('config', ['resnet18_mini_imagenet.py', 'seresnet18_mini_imagenet.py',
                                    'resnet18_mini_places365.py',
                                    'seresnet18_mini_places365.py'])
def test_mini_config_learns_its_classes(config, tmp_path):
    data = config.split('_')[-1].removesuffix('.py')
    data_root = tmp_path / data
    MAKE[data](str(data_root))
    metrics = train_and_test(config, data_root, tmp_path)
    # 8 classes: chance is 12.5% top-1 (62.5% top-5). About 100% after the 20 epochs.
    assert metrics['accuracy/top1'] > 80
    assert metrics['accuracy/top5'] > 95
