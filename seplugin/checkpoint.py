"""Safe checkpoint loading on torch >= 2.6, where ``torch.load`` defaults to weights_only.

mmengine's Runner stores its message hub in every checkpoint: ``HistoryBuffer`` objects
holding numpy arrays, and the buffer's statistics functions, which pickle as
``getattr(HistoryBuffer, 'mean')``. ``weights_only=True`` rejects all three, so ``--resume``
and ``tools/test.py`` fail on checkpoints the runner wrote itself. Instead of switching to
unsafe loading, seplugin allow-lists exactly these types, and ``getattr`` only for the
statistics of ``HistoryBuffer``.
"""
import os
import pickle
import re
import zipfile

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


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: missing, truncated, corrupt, unsafe, or not
    matching the model. The message names the file and what is wrong."""


def _check_zip(path: str) -> None:
    """Check a torch zip checkpoint against the CRC-32 of every record.

    ``torch.save`` stores a CRC-32 per record, but ``torch.load`` does not check them: a
    checkpoint damaged inside its tensor data loads without complaint and gives wrong
    weights. Reading the file once more with ``zipfile`` finds it.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile as e:
        raise CheckpointError(f'checkpoint {path!r} is truncated or corrupt: {e} (a torch '
                              'checkpoint is a zip archive; this one cannot be read, e.g. '
                              'because its writing was interrupted)') from e
    except (OSError, EOFError, RuntimeError, ValueError) as e:
        raise CheckpointError(f'checkpoint {path!r} is truncated or corrupt: '
                              f'{type(e).__name__}: {e}') from e
    if bad is not None:
        raise CheckpointError(f'checkpoint {path!r} is corrupt: its record {bad!r} does not '
                              'match its CRC-32 checksum (the file was damaged after it was '
                              'written)')


def _torch_load(path: str, map_location) -> dict:
    if zipfile.is_zipfile(path):
        _check_zip(path)
    elif os.path.getsize(path) == 0:
        raise CheckpointError(f'checkpoint {path!r} is empty (0 bytes)')
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r'Unsupported global: GLOBAL (\S+)', str(e))
        if found:
            raise CheckpointError(f'{path!r} holds objects that may not be loaded safely: '
                                  f'{found[1]}') from e
        raise CheckpointError(f'{path!r} is not a readable PyTorch checkpoint (truncated or '
                              f'another kind of file): {str(e).splitlines()[0]}') from e
    except Exception as e:  # zip, pickle or storage errors: not a checkpoint torch can read
        raise CheckpointError(f'{path!r} is not a readable PyTorch checkpoint (truncated or '
                              f'another kind of file): {type(e).__name__}: '
                              f'{str(e).splitlines()[0] if str(e) else ""}') from e


def load_file(path: str) -> dict:
    """Read a checkpoint file safely (``weights_only=True``; ``.safetensors`` too) on the CPU.

    A missing, truncated, corrupt or non-checkpoint file raises an error naming the file
    and what was wrong, not a traceback from deep inside pickle or zipfile.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint file {path!r} does not exist')
    if path.endswith('.safetensors'):
        from safetensors import SafetensorError
        from safetensors.torch import load_file as load_safetensors
        try:
            return load_safetensors(path, device='cpu')
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f'{path!r} is not a readable safetensors file: {e}') from e
    return _torch_load(path, 'cpu')


# Checkpoints read by verify_checkpoint, kept for the runner's load of the same file.
_verified: dict[str, tuple[tuple, dict]] = {}


def _stamp(path: str) -> tuple:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


def load_from_local(filename: str, map_location=None) -> dict:
    """mmengine's loader of local checkpoint files (``CheckpointLoader`` scheme ``''``,
    used by ``load_from``, ``--resume`` and ``tools/test.py``), with clear errors.

    mmengine's own calls ``torch.load`` directly: a truncated file gives "PytorchStreamReader
    failed reading zip archive" without the file's name, and a file damaged inside its
    tensor data loads silently. This one names the file, checks the records' checksums and
    loads with ``weights_only=True`` (seplugin's allow-list covers runner checkpoints).
    A file :func:`verify_checkpoint` has read (and that has not changed since) is not read
    again when loaded to the CPU.
    """
    filename = os.path.expanduser(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f'checkpoint file {filename!r} does not exist')
    stamp, checkpoint = _verified.pop(os.path.realpath(filename), (None, None))
    if checkpoint is not None and stamp == _stamp(filename) \
            and map_location in (None, 'cpu'):
        return checkpoint
    return _torch_load(filename, map_location)


def verify_checkpoint(path: str) -> None:
    """Read a local checkpoint file through :func:`load_from_local`, to fail on a missing,
    truncated, corrupt or unsafe file before a run writes anything (the Runner creates its
    log folder and dumps its config before it loads checkpoints). The loaded checkpoint is
    kept for the Runner's load of the same file, which then costs no second read."""
    checkpoint = load_from_local(path, 'cpu')
    _verified[os.path.realpath(os.path.expanduser(path))] = (_stamp(path), checkpoint)


def use_checked_local_loader() -> None:
    """Make mmengine load local checkpoint files with :func:`load_from_local`."""
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)


# How many keys a mismatch error lists.
SHOWN_KEYS = 8


def _shown(keys: list) -> str:
    more = f' and {len(keys) - SHOWN_KEYS} more' if len(keys) > SHOWN_KEYS else ''
    return ', '.join(keys[:SHOWN_KEYS]) + more


def check_state_dict_fits(model: torch.nn.Module, checkpoint: dict, filename: str,
                          revise_keys: list = ((r'^module\.', ''),)) -> list[str]:
    """Check that a checkpoint has every weight of ``model``, in the model's shape.

    mmengine loads ``load_from`` and ``--resume`` checkpoints with ``strict=False``: keys
    the checkpoint lacks and weights of another shape are logged and skipped, and the run
    goes on with the model's random weights there (for evaluation or resuming, this is a
    wrong checkpoint, not a fine-tuning start).

    Args:
        model (nn.Module): The model (unwrapped).
        checkpoint (dict): The loaded checkpoint (with or without ``state_dict``).
        filename (str): For the error message.
        revise_keys: The (pattern, replacement) pairs mmengine applies to the keys.

    Returns:
        list[str]: Keys of the checkpoint the model does not have (not an error).

    Raises:
        CheckpointError: Weights of the model missing from the checkpoint, or of another
            shape there; the message names the keys and both shapes.
    """
    state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f'checkpoint {filename!r} holds no state dict (found '
                              f'{type(checkpoint).__name__})')
    revised = {}
    for key, value in state.items():
        for pattern, replacement in revise_keys:
            key = re.sub(pattern, replacement, key)
        revised[key] = value
    own = model.state_dict()
    missing = [k for k in own if k not in revised and not k.endswith('num_batches_tracked')]
    shapes = [f'{k}: {tuple(revised[k].shape)} in the checkpoint, {tuple(v.shape)} in the '
              f'model' for k, v in own.items()
              if k in revised and hasattr(revised[k], 'shape') and revised[k].shape != v.shape]
    unexpected = [k for k in revised if k not in own]
    problems = []
    if shapes:
        problems.append(f'{len(shapes)} weights have another shape ({"; ".join(shapes[:4])}'
                        f'{" ..." if len(shapes) > 4 else ""})')
    if missing:
        problems.append(f'{len(missing)} of the model\'s {len(own)} weights are not in it '
                        f'({_shown(missing)})')
    if problems:
        hint = ''
        if unexpected:
            hint = (f'; it has {len(unexpected)} keys the model does not have '
                    f'({_shown(unexpected)})')
        raise CheckpointError(
            f'checkpoint {filename!r} does not fit the model: {" and ".join(problems)}'
            f'{hint}. Is it a checkpoint of this config (model type, depth, num_classes)? '
            'A backbone-only or differently-headed checkpoint is a start for training '
            '(load_from), not for testing or resuming')
    return unexpected
