"""tools/dist_train.sh and tools/dist_test.sh with 2 CPU processes (gloo), as a user runs
them, on shortened mini classification and detection configs.

Each training run loads ``tests/probes.py`` (``RankProbeHook``), which records per rank
a digest of the parameters after every step, the files the rank wrote, and the final
parameters. The tests check that the ranks hold identical weights after every step, that
only rank 0 writes checkpoints, and that a 2-process evaluation gathers both ranks' results:
the same predictions and metric as ``tools/test.py`` in one process.
"""
import json
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seplugin.checkpoint import load_file
from seplugin.datasets.mini_cls import make_mini_imagenet
from seplugin.datasets.mini_coco import make_mini_coco, mini_coco_cfg_options

REPO = Path(__file__).parents[2]
TESTS = REPO / 'tests'
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def environment(**extra: str) -> dict:
    """The tools' environment: this interpreter, the probe hook importable."""
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()),
               PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get('PYTHONPATH', '')]))
    env.update(extra)
    return env


def run(args: list, cwd: Path, env: dict | None = None, expect_ok: bool = True,
        timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env or environment(),
                            capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    if expect_ok:
        assert result.returncode == 0, f'{args[:3]} exited with {result.returncode}:\n' \
                                       f'{output[-5000:]}'
    return result


def probed_config(tmp_path: Path, base: Path, probe_dir: Path) -> Path:
    """A config that is ``base`` plus the rank probe."""
    probe_dir.mkdir()
    config = tmp_path / f'{probe_dir.name}_{base.name}'
    config.write_text(
        f'_base_ = [{str(base)!r}]\n'
        "custom_imports = dict(imports=['seplugin', 'probes'], "
        'allow_failed_imports=False)\n'
        f"custom_hooks = [dict(type='RankProbeHook', out_dir={str(probe_dir)!r})]\n")
    return config


def check_ranks(probe: Path, work_dir: Path, steps: int, checkpoints: list[str]) -> None:
    """Identical weights on both ranks after every step, and checkpoints from rank 0 only."""
    lines = [(probe / f'rank{r}_steps.txt').read_text().splitlines() for r in (0, 1)]
    assert len(lines[0]) == steps, lines[0]
    assert lines[0] == lines[1]  # same step numbers, same parameter digests
    assert [int(line.split()[0]) for line in lines[0]] == list(range(1, steps + 1))
    assert len({line.split()[1] for line in lines[0]}) == steps  # every step changed them

    finals = [torch.load(probe / f'rank{r}_final.pt') for r in (0, 1)]
    assert finals[0].keys() == finals[1].keys()
    for name in finals[0]:
        assert torch.equal(finals[0][name], finals[1][name]), name

    # What each rank wrote through mmengine's file backend: rank 0 the checkpoints, each
    # once, rank 1 nothing.
    writes = [[Path(p).name for p in (probe / f'rank{r}_writes.txt').read_text().split()]
              for r in (0, 1)]
    assert [name for name in writes[0] if name.endswith('.pth')] == checkpoints
    assert writes[1] == []
    assert (work_dir / 'last_checkpoint').read_text().strip() \
        == str(work_dir / checkpoints[-1])
    # On disk: the last checkpoint (max_keep_ckpts=1), holding the weights both ranks have.
    assert sorted(p.name for p in work_dir.glob('*.pth')) == [checkpoints[-1]]
    saved = load_file(str(work_dir / checkpoints[-1]))['state_dict']
    for name, value in finals[0].items():
        assert torch.equal(saved[name], value), name


def check_test_writes(probe: Path, predictions: Path, test_dir: Path) -> None:
    """A 2-process evaluation: rank 0 writes the predictions and the metrics file, rank 1
    nothing (mmengine's LoggerHook would have it write the metrics file too, racing)."""
    writes = [(probe / f'rank{r}_writes.txt').read_text().split() for r in (0, 1)]
    assert writes[1] == []
    assert writes[0].count(str(predictions)) == 1
    [metrics_file] = test_dir.glob('*/*.json')
    assert [p for p in writes[0] if p.startswith(str(test_dir))] == [str(metrics_file)]


def metrics_of(test_dir: Path) -> dict:
    """The metrics tools/test.py wrote, without the timings."""
    [file] = test_dir.glob('*/*.json')
    metrics = json.loads(file.read_text())
    return {k: v for k, v in metrics.items() if k not in ('time', 'data_time')}


@pytest.mark.slow  # a minute; the detection run below checks the same launcher
def test_two_cpu_processes_train_and_evaluate_classification(tmp_path):
    data = tmp_path / 'data'
    make_mini_imagenet(str(data), train_per_class=4, val_per_class=2, size=32)
    # 15 validation images: with 2 ranks the sampler pads one, which must not be counted
    val_list = data / 'meta' / 'val.txt'
    val_list.write_text(''.join(val_list.read_text().splitlines(keepends=True)[:-1]))
    probe, work_dir = tmp_path / 'probe', tmp_path / 'train'
    config = probed_config(tmp_path, REPO / 'configs/mini/seresnet18_mini_imagenet.py', probe)
    data_options = [f'{loader}.dataset.data_root={data}' for loader in LOADERS]

    # 32 images, 8 per rank and step: 2 steps per epoch
    result = run(['bash', REPO / 'tools/dist_train.sh', config, 2, '--work-dir', work_dir,
                  '--cfg-options', *data_options, 'train_cfg.max_epochs=2',
                  'train_dataloader.batch_size=8', 'default_hooks.checkpoint.interval=1'],
                 cwd=tmp_path)
    assert "using 'gloo' on the CPUs" in result.stdout + result.stderr
    check_ranks(probe, work_dir, steps=4, checkpoints=['epoch_1.pth', 'epoch_2.pth'])

    checkpoint = work_dir / 'epoch_2.pth'
    test_probe = tmp_path / 'test_probe'
    run(['bash', REPO / 'tools/dist_test.sh',
         probed_config(tmp_path, REPO / 'configs/mini/seresnet18_mini_imagenet.py', test_probe),
         checkpoint, 2, '--work-dir', tmp_path / 'test2', '--out', tmp_path / 'two.pkl',
         '--cfg-options', *data_options], cwd=tmp_path)
    check_test_writes(test_probe, tmp_path / 'two.pkl', tmp_path / 'test2')
    run([sys.executable, REPO / 'tools/test.py', REPO / 'configs/mini/seresnet18_mini_imagenet.py',
         checkpoint, '--work-dir', tmp_path / 'test1', '--out', tmp_path / 'one.pkl',
         '--cfg-options', *data_options], cwd=tmp_path)

    two, one = (pickle.loads((tmp_path / f'{n}.pkl').read_bytes()) for n in ('two', 'one'))
    assert len(one) == len(two) == 15  # each image once: both ranks' results, no padding
    assert sorted(r['sample_idx'] for r in two) == list(range(15))
    by_index = {r['sample_idx']: r for r in one}
    for result in two:
        torch.testing.assert_close(result['pred_score'],
                                   by_index[result['sample_idx']]['pred_score'])
    assert metrics_of(tmp_path / 'test2') == metrics_of(tmp_path / 'test1')


def test_two_cpu_processes_train_and_evaluate_detection(tmp_path):
    data = tmp_path / 'mini_coco'
    make_mini_coco(str(data), num_train=8, num_val=5)  # 5: the sampler pads one
    options = [f'{k}={v}' for k, v in mini_coco_cfg_options(str(data)).items()]
    probe, work_dir = tmp_path / 'probe', tmp_path / 'train'
    base = REPO / 'configs/mini/faster_rcnn_se_r18_fpn_minicoco.py'
    config = probed_config(tmp_path, base, probe)
    run(['bash', REPO / 'tools/dist_train.sh', config, 2, '--work-dir', work_dir,
         '--cfg-options', *options, 'train_dataloader.batch_size=2', 'train_cfg.max_iters=3',
         'train_cfg.val_interval=3', 'default_hooks.checkpoint.interval=3'], cwd=tmp_path)
    check_ranks(probe, work_dir, steps=3, checkpoints=['iter_3.pth'])

    checkpoint = work_dir / 'iter_3.pth'
    test_probe = tmp_path / 'test_probe'
    run(['bash', REPO / 'tools/dist_test.sh', probed_config(tmp_path, base, test_probe),
         checkpoint, 2, '--work-dir', tmp_path / 'test2', '--out', tmp_path / 'two.pkl',
         '--cfg-options', *options], cwd=tmp_path)
    check_test_writes(test_probe, tmp_path / 'two.pkl', tmp_path / 'test2')
    run([sys.executable, REPO / 'tools/test.py', base, checkpoint, '--work-dir',
         tmp_path / 'test1', '--out', tmp_path / 'one.pkl', '--cfg-options', *options],
        cwd=tmp_path)
    two, one = (pickle.loads((tmp_path / f'{n}.pkl').read_bytes()) for n in ('two', 'one'))
    assert sorted(r['img_id'] for r in two) == sorted(r['img_id'] for r in one) \
        == [1, 2, 3, 4, 5]
    by_id = {r['img_id']: r for r in one}
    for result in two:
        # Batches of other sizes than in one process: float rounding differs a little
        ours, theirs = result['pred_instances'], by_id[result['img_id']]['pred_instances']
        assert torch.equal(ours['labels'], theirs['labels'])
        torch.testing.assert_close(ours['bboxes'], theirs['bboxes'], atol=1e-3, rtol=0)
        torch.testing.assert_close(ours['scores'], theirs['scores'], atol=1e-5, rtol=0)
    metrics = metrics_of(tmp_path / 'test2')
    assert metrics == metrics_of(tmp_path / 'test1')
    assert 'coco/bbox_mAP' in metrics


def test_sync_bn_on_cpus_gets_a_clear_error(tmp_path):
    data = tmp_path / 'data'
    make_mini_imagenet(str(data), train_per_class=1, val_per_class=1, size=32)
    data_options = [f'{loader}.dataset.data_root={data}' for loader in LOADERS]
    result = run(['bash', REPO / 'tools/dist_train.sh',
                  REPO / 'configs/mini/seresnet18_mini_imagenet.py', 2,
                  '--work-dir', tmp_path / 'w', '--cfg-options', *data_options,
                  'model.backbone.norm_cfg.type=SyncBN', 'train_cfg.max_epochs=1'],
                 cwd=tmp_path, expect_ok=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert 'the model has SyncBN layers (backbone.bn1, backbone.layer1.0.bn1, ' in output
    assert "distributed run is on the CPU (backend 'gloo')" in output
    assert "norm_cfg=dict(type='BN')" in output
    assert not list((tmp_path / 'w').glob('*.pth'))


def test_nccl_asked_for_without_cuda_is_an_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip('this machine has CUDA')
    result = run(['bash', REPO / 'tools/dist_train.sh',
                  REPO / 'configs/mini/seresnet18_mini_imagenet.py', 1,
                  '--dist-backend', 'nccl', '--work-dir', tmp_path / 'w'],
                 cwd=tmp_path, expect_ok=False)
    assert result.returncode != 0
    assert "distributed backend 'nccl' was asked for on the command line, but CUDA is not " \
           'available' in result.stdout + result.stderr


FAKE_SRUN = r'''#!/usr/bin/env bash
# Stands in for slurm's srun: starts --ntasks copies of the command on this machine with
# the variables slurm sets for each task.
NTASKS=1
while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do
    case "$1" in
        --ntasks=*) NTASKS=${1#--ntasks=}; shift ;;
        -p) echo "$2" >> "$SRUN_LOG"; shift 2 ;;
        *) echo "$1" >> "$SRUN_LOG"; shift ;;
    esac
done
for ((i = 0; i < NTASKS; i++)); do
    SLURM_PROCID=$i SLURM_LOCALID=$i SLURM_NTASKS=$NTASKS SLURM_NODELIST=localhost "$@" &
done
status=0
for job in $(jobs -p); do wait "$job" || status=$?; done
exit $status
'''
FAKE_SCONTROL = '#!/usr/bin/env bash\necho 127.0.0.1\n'


def test_slurm_scripts_with_a_stand_in_srun(tmp_path):
    """tools/slurm_train.sh and slurm_test.sh through mmengine's slurm launcher, with a
    stand-in srun that starts the tasks locally (there is no slurm cluster here)."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for name, text in (('srun', FAKE_SRUN), ('scontrol', FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    data = tmp_path / 'data'
    make_mini_imagenet(str(data), train_per_class=2, val_per_class=1, size=32)
    data_options = [f'{loader}.dataset.data_root={data}' for loader in LOADERS]
    env = environment(PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}', GPUS='2',
                      GPUS_PER_NODE='0', TASKS_PER_NODE='2', SRUN_LOG=str(tmp_path / 'srun'))
    env['MASTER_PORT'] = env.pop('PORT')
    config = REPO / 'configs/mini/seresnet18_mini_imagenet.py'
    run(['bash', REPO / 'tools/slurm_train.sh', 'cpu', 'sejob', config, tmp_path / 'w',
         '--cfg-options', *data_options, 'train_cfg.max_epochs=1',
         'train_dataloader.batch_size=4'], cwd=tmp_path, env=env)
    srun_options = (tmp_path / 'srun').read_text().split()
    assert srun_options == ['cpu', '--job-name=sejob', '--ntasks-per-node=2',
                            '--cpus-per-task=5', '--kill-on-bad-exit=1']
    assert (tmp_path / 'w' / 'epoch_1.pth').is_file()
    [log] = (tmp_path / 'w').glob('*/*.log')
    assert 'Distributed launcher: slurm' in log.read_text()
    assert 'Distributed training: True' in log.read_text()
    assert 'GPU number: 2' in log.read_text()  # mmengine's name for the world size
    run(['bash', REPO / 'tools/slurm_test.sh', 'cpu', 'sejob', config,
         tmp_path / 'w' / 'epoch_1.pth', '--work-dir', tmp_path / 't', '--cfg-options',
         *data_options], cwd=tmp_path, env=env)
    assert 'accuracy/top1' in metrics_of(tmp_path / 't')

