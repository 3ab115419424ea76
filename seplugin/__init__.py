"""seplugin: Squeeze-and-Excitation networks for MMDetection 3.x and MMPretrain 1.x.

Importing it (``custom_imports=dict(imports=['seplugin'])`` in a config) registers its
modules into the registries of the OpenMMLab libraries that are installed, allow-lists
the types of mmengine's runner checkpoints for ``torch.load(weights_only=True)`` (torch
>= 2.5), and makes a failed download of an http(s) checkpoint say which file to fetch and
how to point the config at a copy. ``docs/using_se.md`` ("What `import seplugin`
changes") lists every such effect.
"""
from .checkpoint import allow_runner_checkpoints, use_explained_http_loader
from .version import __version__

allow_runner_checkpoints()
use_explained_http_loader()

from . import datasets, engine, models  # noqa: E402,F401  (registers the modules)

__all__ = ['__version__']
