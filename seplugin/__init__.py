"""seplugin: Squeeze-and-Excitation networks for MMDetection 3.x and MMPretrain 1.x.

Importing it (``custom_imports=dict(imports=['seplugin'])`` in a config) registers its
modules and hooks, allow-lists the types of mmengine checkpoints for
``torch.load(weights_only=True)`` and makes mmengine's loading of local checkpoint files
check them (clear errors for truncated, corrupt or unsafe files), and a failed download of
an http(s) checkpoint say which file to fetch and how to point the config at a copy.
"""
from .checkpoint import allow_runner_checkpoints, use_checked_local_loader
from .version import __version__
from .zoo import use_explained_http_loader

allow_runner_checkpoints()
use_checked_local_loader()
use_explained_http_loader()

from . import datasets, engine, models  # noqa: E402,F401  (registers the modules)

__all__ = ['__version__']
