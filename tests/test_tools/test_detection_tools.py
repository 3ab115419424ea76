"""tools/train.py and tools/test.py on the mini detection configs, each in a
fresh process as a user runs them."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from seplugin.datasets.mini_coco import make_mini_coco, mini_coco_cfg_options

REPO = Path(__file__).parents[2]
BASELINE = REPO / 'configs/mini/faster_rcnn_r18_fpn_minicoco.py'
SE = REPO / 'configs/mini/faster_rcnn_se_r18_fpn_minicoco.py'
METRICS = ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75')


def tool(name: str, *args, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(REPO / 'tools' / name), *map(str, args)],
                            cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f'{name} failed:\n{result.stdout[-3000:]}' \
                                   f'\n{result.stderr[-3000:]}'
    return result


def data_options(root: Path) -> list[str]:
    return [f'{key}={value}' for key, value in mini_coco_cfg_options(str(root)).items()]


def short_run(iters: int) -> list[str]:
    """--cfg-options for a training of ``iters`` iterations that ends with a checkpoint."""
    return [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
            f'default_hooks.checkpoint.interval={iters}', 'default_hooks.logger.interval=1']


def test_metrics(test_dir: Path) -> dict:
    """The metrics tools/test.py wrote: <work dir>/<timestamp>/<timestamp>.json."""
    files = sorted(test_dir.glob('*/*.json'))
    assert files, f'no metrics file in {test_dir}'
    metrics = json.loads(files[-1].read_text())
    for key in METRICS:
        assert -1 <= metrics[key] <= 1, metrics
    return metrics


test_metrics.__test__ = False  # a helper, not a test


def test_train_resume_and_test_from_checkpoint(tmp_path):
    """Two iterations of the SE detector, one more resumed from the checkpoint, then the
    evaluation of the final checkpoint: the runner's own checkpoints load back."""
    data = tmp_path / 'mini_coco'
    make_mini_coco(str(data), num_train=8, num_val=4)
    work_dir = tmp_path / 'se'
    options = ['--cfg-options', *data_options(data), 'train_dataloader.batch_size=2']
    tool('train.py', SE, '--work-dir', work_dir, *options, *short_run(2), cwd=tmp_path)
    assert (work_dir / 'iter_2.pth').is_file()

    resumed = tool('train.py', SE, '--work-dir', work_dir, '--resume', *options,
                   *short_run(3), cwd=tmp_path)
    assert 'resumed' in (resumed.stdout + resumed.stderr).lower()
    assert 'Iter(train) [3/3]' in resumed.stdout + resumed.stderr
    assert 'Iter(train) [1/3]' not in resumed.stdout + resumed.stderr
    checkpoint = (work_dir / 'last_checkpoint').read_text().strip()
    assert checkpoint.endswith('iter_3.pth')

    tool('test.py', SE, checkpoint, '--work-dir', work_dir / 'test',
         '--cfg-options', *data_options(data), cwd=tmp_path)
    test_metrics(work_dir / 'test')


@pytest.mark.slow
@pytest.mark.parametrize('config', [BASELINE, SE], ids=['baseline', 'se'])
def test_short_training_on_the_full_mini_dataset(tmp_path, config):
    data = tmp_path / 'mini_coco'
    make_mini_coco(str(data))
    work_dir = tmp_path / 'run'
    tool('train.py', config, '--work-dir', work_dir, '--cfg-options', *data_options(data),
         *short_run(20), cwd=tmp_path)
    tool('test.py', config, work_dir / 'iter_20.pth', '--work-dir', work_dir / 'test',
         '--cfg-options', *data_options(data), cwd=tmp_path)
    test_metrics(work_dir / 'test')
