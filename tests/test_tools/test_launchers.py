"""tools/dist_*.sh and slurm_*.sh before they start anything: the process counts they are
given, and the interpreter they pick."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]


def launch(script: str, *args, env: dict | None = None, cwd: Path = REPO):
    return subprocess.run(['bash', str(REPO / 'tools' / script), *map(str, args)], cwd=cwd,
                          env=env or dict(os.environ, PYTHON=sys.executable),
                          capture_output=True, text=True)


@pytest.mark.parametrize('script, args, name, value', [
    ('dist_train.sh', ['cfg.py', '--work-dir', 'w'], 'NPROC', '--work-dir'),
    ('dist_train.sh', ['cfg.py', 'two'], 'NPROC', 'two'),
    ('dist_train.sh', ['cfg.py', '0'], 'NPROC', '0'),
    ('dist_test.sh', ['cfg.py', 'ckpt.pth', '--out', 'r.pkl'], 'NPROC', '--out'),
])
def test_dist_process_count_must_be_a_number(script, args, name, value):
    """Without the check, torchrun got "--work-dir" as nproc_per_node."""
    result = launch(script, *args)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0].endswith(
        f"{script}: {name} must be a whole number >= 1, got '{value}'")
    assert 'usage: ' in result.stderr and 'torch.distributed' not in result.stderr


@pytest.mark.parametrize('script', ['dist_train.sh', 'dist_test.sh'])
def test_dist_without_the_process_count_prints_the_usage(script):
    result = launch(script, 'cfg.py')
    assert result.returncode == 2
    assert result.stderr.startswith('usage: ') and 'NPROC' in result.stderr


@pytest.mark.parametrize('variable', ['GPUS', 'GPUS_PER_NODE', 'CPUS_PER_TASK'])
def test_slurm_counts_must_be_numbers(variable):
    env = dict(os.environ, PYTHON=sys.executable, **{variable: 'eight'})
    result = launch('slurm_train.sh', 'part', 'job', 'cfg.py', 'w', env=env)
    assert result.returncode == 2
    assert f"{variable} must be a whole number >= " in result.stderr
    assert "got 'eight'" in result.stderr


def pick(tools: Path, **env: str) -> str:
    """The interpreter tools/launcher_env.sh picks in this environment."""
    base = {k: v for k, v in os.environ.items()
            if k not in ('PYTHON', 'VIRTUAL_ENV', 'CONDA_PREFIX', 'SEPLUGIN_VENV')}
    result = subprocess.run(['bash', '-c', f'source {tools}/launcher_env.sh; pick_python; '
                                           'echo "$PYTHON"'],
                            env=dict(base, **env), capture_output=True, text=True, check=True)
    return result.stdout.strip()


def test_the_interpreter_is_the_active_one_else_the_repository_venv(tmp_path):
    tools = tmp_path / 'repo' / 'tools'
    tools.mkdir(parents=True)
    shutil.copy(REPO / 'tools' / 'launcher_env.sh', tools)
    assert pick(tools) == 'python'  # no .venv: whatever python is on the PATH
    venv_python = tmp_path / 'repo' / '.venv' / 'bin' / 'python'
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text('#!/bin/sh\n')
    venv_python.chmod(0o755)
    assert pick(tools) == str(venv_python)  # not activated: the repository's .venv
    assert pick(tools, VIRTUAL_ENV='/some/env') == 'python'  # activated: its python
    assert pick(tools, CONDA_PREFIX='/some/conda') == 'python'
    assert pick(tools, PYTHON='/my/python') == '/my/python'  # chosen explicitly


def test_an_interpreter_without_torch_is_named(tmp_path):
    fake = tmp_path / 'python'
    fake.write_text('#!/bin/sh\nexit 1\n')  # stands in for a python without torch
    fake.chmod(0o755)
    result = launch('dist_train.sh', 'cfg.py', '2', env=dict(os.environ, PYTHON=str(fake)))
    assert result.returncode == 2
    assert f"'{fake}' ({fake}) cannot import torch; activate the environment (source " \
           '.venv/bin/activate) or set PYTHON' in result.stderr
