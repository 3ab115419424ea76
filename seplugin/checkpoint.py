"""Safe checkpoint loading on torch >= 2.6, where ``torch.load`` defaults to weights_only.

mmengine's Runner stores its message hub in every checkpoint: ``HistoryBuffer`` objects
holding numpy arrays, and the buffer's statistics functions, which pickle as
``getattr(HistoryBuffer, 'mean')``. ``weights_only=True`` rejects all three, so ``--resume``
and ``tools/test.py`` fail on checkpoints the runner wrote itself. Instead of switching to
unsafe loading, seplugin allow-lists exactly these types, and ``getattr`` only for the
statistics of ``HistoryBuffer``.
"""
import pickle
import re

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer


def history_buffer_statistic(owner: type, name: str):
    """Stands in for ``builtins.getattr`` while unpickling: resolves only HistoryBuffer
    statistics (``min``, ``max``, ``current``, ``mean`` and registered ones)."""
    if owner is HistoryBuffer and isinstance(name, str) \
            and name in HistoryBuffer._statistics_methods:
        return HistoryBuffer._statistics_methods[name]
    raise pickle.UnpicklingError(
        f'checkpoint asks for getattr({owner!r}, {name!r}); only HistoryBuffer statistics '
        f'{sorted(HistoryBuffer._statistics_methods)} are allowed')


def runner_checkpoint_globals() -> list:
    """The non-tensor globals found in checkpoints written by mmengine/mmdet/mmpretrain."""
    dtypes = [type(np.dtype(name)) for name in
              ('float64', 'float32', 'float16', 'int64', 'int32', 'int16', 'int8', 'uint8',
               'bool')]
    return [
        HistoryBuffer,
        np.ndarray,
        np.dtype,
        *dtypes,
        (np._core.multiarray._reconstruct, 'numpy._core.multiarray._reconstruct'),
        (np._core.multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
        (np._core.multiarray.scalar, 'numpy._core.multiarray.scalar'),
        (np._core.multiarray.scalar, 'numpy.core.multiarray.scalar'),
        (history_buffer_statistic, 'builtins.getattr'),
    ]


def allow_runner_checkpoints() -> None:
    """Allow-list the runner's checkpoint globals for ``torch.load(weights_only=True)``."""
    HistoryBuffer()._set_default_statistics()  # the statistics table starts empty
    torch.serialization.add_safe_globals(runner_checkpoint_globals())


def load_file(path: str) -> dict:
    """Read a checkpoint file safely (``weights_only=True``; ``.safetensors`` too) on the CPU.

    A missing, truncated or non-checkpoint file raises an error naming the file and what
    was wrong, not a traceback from deep inside pickle or zipfile.
    """
    import os
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint file {path!r} does not exist')
    if path.endswith('.safetensors'):
        from safetensors import SafetensorError
        from safetensors.torch import load_file as load_safetensors
        try:
            return load_safetensors(path, device='cpu')
        except (SafetensorError, OSError) as e:
            raise ValueError(f'{path!r} is not a readable safetensors file: {e}') from e
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r'Unsupported global: GLOBAL (\S+)', str(e))
        if found:
            raise ValueError(f'{path!r} holds objects that may not be loaded safely: '
                             f'{found[1]}') from e
        raise ValueError(f'{path!r} is not a readable PyTorch checkpoint (truncated or '
                         f'another kind of file): {str(e).splitlines()[0]}') from e
    except Exception as e:  # zip, pickle or storage errors: not a checkpoint torch can read
        raise ValueError(f'{path!r} is not a readable PyTorch checkpoint (truncated or '
                         f'another kind of file): {type(e).__name__}: {str(e).splitlines()[0]}'
                         ) from e
