"""seplugin: Squeeze-and-Excitation networks for MMDetection 3.x and MMPretrain 1.x.

Importing it (``custom_imports=dict(imports=['seplugin'])`` in a config) registers its
modules and allow-lists the types of mmengine checkpoints for ``torch.load(weights_only=True)``.
"""
from .checkpoint import allow_runner_checkpoints
from .version import __version__

allow_runner_checkpoints()

from . import datasets, models  # noqa: E402,F401  (registers the modules)

__all__ = ['__version__']
