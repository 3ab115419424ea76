"""The two mini data generators as a user runs them (``python -m ...``): the same answer on
a folder that has files in it, no warnings."""
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
COMMANDS = {
    'mini_coco': ['-m', 'seplugin.datasets.mini_coco', '--num-train', '1', '--num-val', '1',
                  '--image-size', '32'],
    'mini_cls': ['-m', 'seplugin.datasets.mini_cls', 'imagenet', '--train-per-class', '1',
                 '--val-per-class', '1', '--size', '16'],
}


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO),
                                                       os.environ.get('PYTHONPATH', '')]))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True)


@pytest.mark.parametrize('name', sorted(COMMANDS))
def test_existing_data_is_refused_without_overwrite_and_nothing_warns(name, tmp_path):
    """One process per generator (each imports seplugin, which takes seconds): the refusal
    comes after the module ran, so runpy's warning would be in its output."""
    (tmp_path / 'out').mkdir()
    (tmp_path / 'out' / 'mine.txt').write_text('mine')
    # -W error: a RuntimeWarning (runpy's "found in sys.modules ... unpredictable
    # behaviour") would fail the command; other libraries' deprecation notices are theirs
    refused = run(['-W', 'error::RuntimeWarning', *COMMANDS[name], '--out', 'out'], tmp_path)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        'error: out exists and is not empty; choose a new folder or pass overwrite=True '
        '(--overwrite), which rewrites the generated files in place and leaves other files '
        'alone']
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == ['mine.txt']

    module = importlib.import_module(COMMANDS[name][1])
    module.main([*COMMANDS[name][2:], '--out', str(tmp_path / 'out'), '--overwrite'])
    assert (tmp_path / 'out' / 'mine.txt').read_text() == 'mine'
    assert len(list((tmp_path / 'out').rglob('*.json' if name == 'mini_coco' else '*.txt'))) \
        >= 2
