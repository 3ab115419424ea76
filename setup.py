"""Packaging hooks: ship configs, model zoo and tools inside the package, under ``.mim/``.

Metadata lives in ``pyproject.toml``. This file only adds what OpenMMLab packages do in
their ``setup.py`` (``add_mim_extension``): an installed seplugin carries
``seplugin/.mim/{configs,tools,model-index.yml}``, where ``mim train/test/search`` and a
user without a clone find them. Nothing is copied into the repository:

- a wheel gets copies in its build directory (``build_py``);
- an sdist gets copies in its release tree (``sdist``), from which its wheel copies them;
- an editable install (``pip install -e .``) links ``seplugin/.mim/*`` to the repository's
  own folders (ignored by git), as mmdet's ``develop`` mode does, so edits show at once.
"""
import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent
# What seplugin/.mim holds: the configs (with their metafiles), the tools, the zoo index.
MIM_ITEMS = ('configs', 'tools', 'model-index.yml')
IGNORED = shutil.ignore_patterns('__pycache__', '*.pyc', '*.pyo')


def mim_source(name: str) -> Path:
    """An item from the repository, or from ``seplugin/.mim`` when building from an sdist
    (which has no top-level copies)."""
    top = ROOT / name
    return top if top.exists() else ROOT / 'seplugin' / '.mim' / name


def copy_mim(target: Path) -> None:
    missing = [name for name in MIM_ITEMS if not mim_source(name).exists()]
    if missing:
        raise FileNotFoundError(f'cannot package seplugin/.mim: no {", ".join(missing)}')
    for name in MIM_ITEMS:
        source, dest = mim_source(name).resolve(), target / name
        if dest.is_symlink() or dest.is_file():
            dest.unlink()
        elif dest.is_dir():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, dest, ignore=IGNORED)
        else:
            shutil.copy2(source, dest)


def link_mim(target: Path) -> None:
    """Editable installs: ``seplugin/.mim/<item>`` -> ``../../<item>``."""
    target.mkdir(exist_ok=True)
    for name in MIM_ITEMS:
        dest = target / name
        if dest.is_symlink() or dest.exists():
            continue  # a link from an earlier install, or (sdist) the real files
        os.symlink(os.path.relpath(ROOT / name, target), dest)


class BuildPyWithMim(build_py):
    def run(self):
        super().run()
        if self.editable_mode:
            link_mim(ROOT / 'seplugin' / '.mim')
        else:
            copy_mim(Path(self.build_lib) / 'seplugin' / '.mim')


class SdistWithMim(sdist):
    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        copy_mim(Path(base_dir) / 'seplugin' / '.mim')


setup(cmdclass={'build_py': BuildPyWithMim, 'sdist': SdistWithMim})
