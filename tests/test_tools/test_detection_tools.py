"""tools/train.py, tools/test.py and tools/demo.py on the mini detection configs, each in a
fresh process as a user runs them."""
import importlib.util
import json
import subprocess
import sys
import types
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


@pytest.mark.slow
def test_demo_trains_both_detectors_to_a_useful_ap(tmp_path):
    """The README's main job, unshortened: both detectors learn (AP well above zero), and
    the comparison table shows each one's AP."""
    result = tool('demo.py', '--work-dir', tmp_path / 'demo', '--data-root',
                  tmp_path / 'mini_coco', cwd=tmp_path)
    ap = {name: test_metrics(tmp_path / 'demo' / name / 'seed0')['coco/bbox_mAP']
          for name in ('baseline', 'se')}
    assert min(ap.values()) >= 0.2, ap
    assert (f"| coco/bbox_mAP | {100 * ap['baseline']:.2f} (n=1) | {100 * ap['se']:.2f} "
            f"(n=1) | {100 * (ap['se'] - ap['baseline']):+.2f} |") in result.stdout
    assert (tmp_path / 'demo' / 'compare' / 'compare.md').exists()


def load_demo():
    spec = importlib.util.spec_from_file_location('demo', REPO / 'tools' / 'demo.py')
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    return demo


def test_demo_generates_data_and_runs_the_pair_alike(tmp_path, monkeypatch):
    """The demo is tools/run_pair.py on the two mini configs, with the data root (when not
    the configs' own) and the user's options given to both."""
    calls = []
    monkeypatch.setattr(sys, 'path', list(sys.path))  # demo.main adds tools/
    monkeypatch.setitem(sys.modules, 'run_pair',
                        types.SimpleNamespace(main=lambda argv: calls.append(argv) or 0))
    demo = load_demo()
    data = tmp_path / 'elsewhere'
    assert demo.main(['--work-dir', str(tmp_path / 'w'), '--data-root', str(data),
                      '--seeds', '3', '4', '--cfg-options', 'train_cfg.max_iters=5']) == 0
    assert (data / 'annotations' / 'instances_val.json').is_file()
    argv = calls.pop()
    assert argv[:2] == [demo.BASELINE, demo.SE]
    assert argv[2:7] == ['--seeds', '3', '4', '--work-dir', str(tmp_path / 'w')]
    options = argv[argv.index('--cfg-options') + 1:]
    assert options == data_options(data) + ['train_cfg.max_iters=5']

    monkeypatch.chdir(tmp_path)  # the default root, relative like the configs' own
    assert demo.main([]) == 0
    assert (tmp_path / demo.DEFAULT_DATA_ROOT / 'annotations' / 'instances_train.json').is_file()
    assert calls.pop() == [demo.BASELINE, demo.SE, '--seeds', '0', '--work-dir',
                           'work_dirs/demo']
