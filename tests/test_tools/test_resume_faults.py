"""Faults: a training killed with SIGKILL and resumed, and damaged checkpoints.

A killed-and-resumed training must end where an uninterrupted one with the same seed ends:
same weights (bit for bit, deterministic mode on the CPU), optimizer and scheduler state,
iteration count. A truncated or damaged checkpoint must get an error naming the file, and
leave every file of the work dir as it was.
"""
import hashlib
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from seplugin.checkpoint import load_file
from seplugin.datasets.mini_cls import make_mini_imagenet
from seplugin.datasets.mini_coco import make_mini_coco, mini_coco_cfg_options

REPO = Path(__file__).parents[2]
TESTS = REPO / 'tests'
CLS_CONFIG = REPO / 'configs/mini/seresnet18_mini_imagenet.py'
DET_CONFIG = REPO / 'configs/mini/faster_rcnn_se_r18_fpn_minicoco.py'
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def tool(name: str, *args, cwd: Path, expect_ok: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ,
               PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get('PYTHONPATH', '')]))
    result = subprocess.run([sys.executable, str(REPO / 'tools' / name), *map(str, args)],
                            cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if expect_ok:
        assert result.returncode == 0, f'{name} failed:\n{(result.stdout + result.stderr)[-4000:]}'
    return result


def with_kill(tmp_path: Path, base: Path, after_step: int) -> Path:
    """``base`` plus a hook that SIGKILLs the training after ``after_step`` steps."""
    config = tmp_path / f'killed_{base.name}'
    config.write_text(
        f'_base_ = [{str(base)!r}]\n'
        "custom_imports = dict(imports=['seplugin', 'probes'], allow_failed_imports=False)\n"
        f"custom_hooks = [dict(type='KillHook', after_step={after_step})]\n")
    return config


def assert_same_training_state(a: dict, b: dict) -> None:
    """Two runner checkpoints hold the same weights, optimizer, schedulers and counters."""
    assert a['meta']['epoch'] == b['meta']['epoch']
    assert a['meta']['iter'] == b['meta']['iter']
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for key, value in a['state_dict'].items():
        assert torch.equal(value, b['state_dict'][key]), key
    opt_a, opt_b = a['optimizer'], b['optimizer']
    assert opt_a['param_groups'] == opt_b['param_groups']
    assert opt_a['state'].keys() == opt_b['state'].keys()
    for index, state in opt_a['state'].items():
        for name, value in state.items():
            other = opt_b['state'][index][name]
            assert torch.equal(value, other) if torch.is_tensor(value) else value == other
    assert a['param_schedulers'] == b['param_schedulers']


def resumed_at(output: str) -> tuple[int, int]:
    found = re.search(r'resumed epoch: (\d+), iter: (\d+)', output)
    assert found, output[-3000:]
    return int(found[1]), int(found[2])


@pytest.fixture(scope='module')
def cls_run(tmp_path_factory):
    """An uninterrupted deterministic run of the SE-ResNet-18 mini classifier: 4 epochs of
    4 steps, a checkpoint per epoch, validation every 2 epochs."""
    root = tmp_path_factory.mktemp('cls')
    data = root / 'data'
    make_mini_imagenet(str(data), train_per_class=4, val_per_class=1, size=32)
    options = [*(f'{loader}.dataset.data_root={data}' for loader in LOADERS),
               'train_cfg.max_epochs=4', 'train_cfg.val_interval=2',
               'train_dataloader.batch_size=8', 'default_hooks.checkpoint.interval=1',
               'default_hooks.checkpoint.max_keep_ckpts=-1',
               'param_scheduler.milestones=[1,3]',  # the LR changes after the resume point
               'randomness.seed=0', 'randomness.deterministic=True']
    tool('train.py', CLS_CONFIG, '--work-dir', root / 'straight', '--cfg-options', *options,
         cwd=root)
    return root, options


def test_killed_classification_resumes_to_the_same_weights(cls_run):
    root, options = cls_run
    work_dir = root / 'killed'
    # Killed after step 10 of 16: epoch_2.pth (step 8) is the last checkpoint
    killed = tool('train.py', with_kill(root, CLS_CONFIG, 10), '--work-dir', work_dir,
                  '--cfg-options', *options, cwd=root, expect_ok=False)
    assert killed.returncode == -9, (killed.stdout + killed.stderr)[-3000:]
    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['epoch_1.pth', 'epoch_2.pth']
    assert (work_dir / 'last_checkpoint').read_text().strip().endswith('epoch_2.pth')

    resumed = tool('train.py', CLS_CONFIG, '--work-dir', work_dir, '--resume',
                   '--cfg-options', *options, cwd=root)
    assert resumed_at(resumed.stdout + resumed.stderr) == (2, 8)
    # tools/train.py added the hook, because the config asks for determinism
    assert "type='ResumableRandomnessHook'" in (work_dir / CLS_CONFIG.name).read_text()

    straight = root / 'straight'
    # The checkpoint the resume started from is the uninterrupted run's at that epoch ...
    assert_same_training_state(load_file(str(work_dir / 'epoch_2.pth')),
                               load_file(str(straight / 'epoch_2.pth')))
    # ... and so is every later one, to the end: weights, optimizer, schedulers, counters.
    for epoch in (3, 4):
        assert_same_training_state(load_file(str(work_dir / f'epoch_{epoch}.pth')),
                                   load_file(str(straight / f'epoch_{epoch}.pth')))
    final = load_file(str(work_dir / 'epoch_4.pth'))
    assert final['meta']['iter'] == 16 and final['meta']['epoch'] == 4
    assert final['param_schedulers'][0]['_global_step'] == 4
    assert final['optimizer']['param_groups'][0]['lr'] == pytest.approx(0.1 * 0.1 ** 2)


def file_states(folder: Path) -> dict:
    """Every file under ``folder``: its modification time and SHA-256."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns,
                                         hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob('*')) if p.is_file()}


def damaged_copies(source: Path, folder: Path) -> dict[str, Path]:
    folder.mkdir()
    data = source.read_bytes()
    truncated = folder / 'truncated.pth'
    truncated.write_bytes(data[:len(data) // 2])
    # Damaged inside its pickle record, which the check before the run reads (damage inside
    # tensor data is found only by verify_checkpoint(checksums=True): tests/test_checkpoint)
    with zipfile.ZipFile(source) as archive:
        record = next(i for i in archive.infolist() if i.filename.endswith('/data.pkl'))
    flipped = bytearray(data)
    start = record.header_offset + 200
    flipped[start:start + 8] = bytes(b ^ 0xFF for b in flipped[start:start + 8])
    corrupt = folder / 'corrupt.pth'
    corrupt.write_bytes(bytes(flipped))
    return dict(truncated=truncated, corrupt=corrupt)


def test_damaged_checkpoint_for_resume_is_refused_and_nothing_is_overwritten(cls_run):
    root, options = cls_run
    work_dir = root / 'damaged'
    damaged = damaged_copies(root / 'straight' / 'epoch_2.pth', work_dir)
    # --resume without a path takes the checkpoint named in last_checkpoint
    (work_dir / 'last_checkpoint').write_text(str(damaged['truncated']))
    before = file_states(work_dir)

    result = tool('train.py', CLS_CONFIG, '--work-dir', work_dir, '--resume',
                  '--cfg-options', *options, cwd=root, expect_ok=False)
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert f"CheckpointError: checkpoint {str(damaged['truncated'])!r} is truncated or " \
           'damaged' in output

    # --resume CKPT: a checkpoint damaged inside
    result = tool('train.py', CLS_CONFIG, '--work-dir', work_dir, '--resume',
                  damaged['corrupt'], '--cfg-options', *options, cwd=root, expect_ok=False)
    assert result.returncode == 1
    assert f"CheckpointError: checkpoint {str(damaged['corrupt'])!r} is damaged: its record " \
           in result.stderr
    assert 'does not match its CRC-32 checksum' in result.stderr
    # The checkpoint is checked before the runner starts: nothing written, nothing removed
    assert file_states(work_dir) == before


def test_damaged_checkpoint_for_test_is_refused(cls_run):
    root, options = cls_run
    damaged = damaged_copies(root / 'straight' / 'epoch_4.pth', root / 'for_test')
    before = file_states(root / 'for_test')
    result = tool('test.py', CLS_CONFIG, damaged['corrupt'], '--work-dir', root / 'for_test',
                  '--cfg-options', *options, cwd=root, expect_ok=False)
    assert result.returncode == 1
    assert re.search(r"CheckpointError: checkpoint '\S+corrupt.pth' is damaged: its record "
                     r"'\S+data.pkl' does not match its CRC-32 checksum", result.stderr)
    assert file_states(root / 'for_test') == before


@pytest.mark.slow
def test_killed_detection_resumes_to_the_same_weights(tmp_path):
    """Iteration-based, resumed between checkpoints, with torch's RNG in the RoI sampler."""
    data = tmp_path / 'mini_coco'
    make_mini_coco(str(data), num_train=8, num_val=2)
    options = [*(f'{k}={v}' for k, v in mini_coco_cfg_options(str(data)).items()),
               'train_dataloader.batch_size=2', 'train_cfg.max_iters=8',
               'train_cfg.val_interval=4', 'default_hooks.checkpoint.interval=3',
               'default_hooks.checkpoint.max_keep_ckpts=-1', 'randomness.deterministic=True']
    tool('train.py', DET_CONFIG, '--work-dir', tmp_path / 'straight', '--cfg-options',
         *options, cwd=tmp_path)
    killed = tool('train.py', with_kill(tmp_path, DET_CONFIG, 5), '--work-dir',
                  tmp_path / 'killed', '--cfg-options', *options, cwd=tmp_path,
                  expect_ok=False)
    assert killed.returncode == -9
    resumed = tool('train.py', DET_CONFIG, '--work-dir', tmp_path / 'killed', '--resume',
                   '--cfg-options', *options, cwd=tmp_path)
    assert resumed_at(resumed.stdout + resumed.stderr) == (0, 3)
    for step in (6, 8):
        assert_same_training_state(load_file(str(tmp_path / 'killed' / f'iter_{step}.pth')),
                                   load_file(str(tmp_path / 'straight' / f'iter_{step}.pth')))
