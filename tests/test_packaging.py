"""What ``pip install .`` ships: the package plus, under ``seplugin/.mim/``, the configs
(with their metafiles), the tools and ``model-index.yml``, as OpenMMLab packages do (what
``mim train/test/search`` and a user without a clone read).

The wheel and the sdist are built from a copy of the repository's files in a temporary
folder (a few seconds, no network: the environment's setuptools builds them), and the wheel
is also built from the sdist, as pip does when it installs one.
"""
import shutil
import subprocess
import sys
import tarfile
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

REPO = Path(__file__).parents[1]
SOURCES = ('pyproject.toml', 'setup.py', 'setup.cfg', 'README.md', 'model-index.yml',
           'seplugin', 'configs', 'tools')
IGNORED = shutil.ignore_patterns('__pycache__', '*.pyc', '*.egg-info', '.mim')


def repo_files(under: str) -> set[str]:
    """Files of ``configs``/``tools`` (or the one file) that must be in ``.mim``."""
    path = REPO / under
    if path.is_file():
        return {under}
    return {str(p.relative_to(REPO)) for p in path.rglob('*')
            if p.is_file() and '__pycache__' not in p.parts}


EXPECTED = repo_files('configs') | repo_files('tools') | repo_files('model-index.yml')


def build(kind: str, source: Path, out: Path) -> Path:
    """``build_wheel``/``build_sdist`` of setuptools' PEP 517 backend, run in ``source``."""
    code = (f'from setuptools import build_meta; '
            f'print(build_meta.build_{kind}({str(out)!r}))')
    done = subprocess.run([sys.executable, '-c', code], cwd=source, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return out / done.stdout.strip().splitlines()[-1]


def build_backend_missing() -> str:
    """Why this environment's setuptools cannot build seplugin ('' when it can): the builds
    here use it directly, where pip would first install ``[build-system] requires`` in an
    isolated environment (``tools/setup_env.sh`` installs a setuptools that meets them)."""
    pyproject = tomllib.loads((REPO / 'pyproject.toml').read_text())
    for requirement in map(Requirement, pyproject['build-system']['requires']):
        if requirement.name == 'setuptools' and \
                not requirement.specifier.contains(version('setuptools'), prereleases=True):
            return f'setuptools {version("setuptools")} does not meet {requirement}'
    return ''


@pytest.fixture(scope='module')
def source(tmp_path_factory) -> Path:
    """The repository's packaged files, copied as a clone has them (no .mim, no build)."""
    if build_backend_missing():
        pytest.skip(build_backend_missing())
    root = tmp_path_factory.mktemp('src')
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, root / name, ignore=IGNORED)
        else:
            shutil.copy2(path, root / name)
    return root


def mim_files(names: list[str], prefix: str = '') -> set[str]:
    """The repository-relative names of the files under ``<prefix>seplugin/.mim/``."""
    head = f'{prefix}seplugin/.mim/'
    return {n[len(head):] for n in names if n.startswith(head) and not n.endswith('/')}


def test_the_wheel_carries_configs_tools_and_the_model_index(source, tmp_path):
    wheel = build('wheel', source, tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert mim_files(names) == EXPECTED
    assert 'seplugin/.mim/configs/mini/seresnet18_mini_imagenet.py' in names
    assert 'seplugin/.mim/configs/imagenet/metafile.yml' in names
    assert 'seplugin/.mim/tools/train.py' in names
    assert 'seplugin/__init__.py' in names
    # only seplugin: no top-level configs/ or tools/ package beside it
    assert {n.split('/')[0] for n in names} == {'seplugin', wheel.name.split('-')[0] + '-'
                                                + wheel.name.split('-')[1] + '.dist-info'}


def test_the_sdist_carries_them_and_its_wheel_too(source, tmp_path):
    sdist = build('sdist', source, tmp_path)
    with tarfile.open(sdist) as tar:
        names = [member.name for member in tar.getmembers() if member.isfile()]
        top = names[0].split('/')[0] + '/'
        assert mim_files(names, top) == EXPECTED
        tar.extractall(tmp_path / 'unpacked', filter='data')
    unpacked = tmp_path / 'unpacked' / top
    assert not (unpacked / 'configs').exists()  # one copy, under seplugin/.mim
    wheel = build('wheel', unpacked, tmp_path / 'wheel_from_sdist')
    assert mim_files(zipfile.ZipFile(wheel).namelist()) == EXPECTED


def test_the_packaging_fails_without_what_it_ships(source, tmp_path):
    """A source tree without tools/ cannot build a wheel that silently lacks them."""
    broken = tmp_path / 'broken'
    shutil.copytree(source, broken)
    shutil.rmtree(broken / 'tools')
    code = f'from setuptools import build_meta; build_meta.build_wheel({str(tmp_path)!r})'
    done = subprocess.run([sys.executable, '-c', code], cwd=broken, capture_output=True,
                          text=True)
    assert done.returncode != 0 and 'cannot package seplugin/.mim: no tools' in done.stderr
