"""Checkpoint files: loaded exactly as torch and mmengine load them, explained when that fails.

Loading is ``torch.load(path, map_location=...)`` with torch's own default for
``weights_only``, so ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` and
``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1`` work as torch documents, and it reads the file once.
Only when it fails does :func:`diagnose` look at the file (missing, empty, truncated,
damaged, unsafe globals, another format) and raise a :class:`CheckpointError` naming the file
and what is wrong. :func:`verify_checkpoint` is the cheap check the tools run before the
Runner writes anything: it reads the zip directory at the end of the file and the small
pickle record, not the tensor data.

Damage inside tensor data: ``torch.save`` stores a CRC-32 per record, but torch's reader
does not check it (a file damaged there loads without complaint and gives wrong weights).
Checking it costs a full extra read, so it is opt-in: ``verify_checkpoint(path,
checksums=True)``. Archives written after ``torch.serialization.set_crc32_options(False)``
carry no checksums; they are never called damaged.

From torch 2.6, ``weights_only=True`` is the default, and it refuses what mmengine's Runner
puts in every checkpoint: the message hub, with ``HistoryBuffer`` objects holding numpy arrays
and statistics functions pickled as ``getattr(HistoryBuffer, 'mean')``. ``--resume`` and
``tools/test.py`` would fail on checkpoints the Runner wrote itself.
:func:`allow_runner_checkpoints` (run by ``import seplugin``) allow-lists exactly these types,
and ``getattr`` only for the statistics of ``HistoryBuffer``.

Downloads: :func:`load_from_http` is mmengine's http(s) checkpoint loader with an error that
says, when the download fails (offline, proxy, moved file), which file to fetch and how to
point the config at a local copy, instead of a bare ``URLError``;
:func:`use_explained_http_loader` (run by ``import seplugin``) registers it.
"""
import io
import os
import os.path as osp
import pickle
import re
import tarfile
import zipfile
from contextlib import contextmanager
from urllib.parse import urlparse

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer

try:  # numpy >= 2 (numpy 1.x pickles name numpy.core, 2.x numpy._core: both are allowed)
    from numpy._core import multiarray
except ImportError:  # numpy 1.x
    from numpy.core import multiarray

# The config key under which seplugin's detection configs name their starting weights.
BACKBONE_CHECKPOINT_KEY = 'model.backbone.init_cfg.checkpoint'
# The statistics every HistoryBuffer has (mmengine registers them in its first __init__).
DEFAULT_STATISTICS = ('min', 'max', 'current', 'mean')


def history_buffer_statistic(owner: type, name: str):
    """Stands in for ``builtins.getattr`` while unpickling: resolves only HistoryBuffer
    statistics (``min``, ``max``, ``current``, ``mean`` and registered ones)."""
    allowed = {**{n: getattr(HistoryBuffer, n) for n in DEFAULT_STATISTICS},
               **HistoryBuffer._statistics_methods}
    if owner is HistoryBuffer and isinstance(name, str) and name in allowed:
        return allowed[name]
    raise pickle.UnpicklingError(
        f'checkpoint asks for getattr({owner!r}, {name!r}); only HistoryBuffer statistics '
        f'{sorted(allowed)} are allowed')


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
        (multiarray._reconstruct, 'numpy._core.multiarray._reconstruct'),
        (multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
        (multiarray.scalar, 'numpy._core.multiarray.scalar'),
        (multiarray.scalar, 'numpy.core.multiarray.scalar'),
        (history_buffer_statistic, 'builtins.getattr'),
    ]


# torch's allow-list for weights_only loading, with (object, name) entries: torch >= 2.5
# (2.4 has add_safe_globals without named entries; weights_only=True is the default from 2.6)
HAS_ALLOW_LIST = hasattr(torch.serialization, 'add_safe_globals') and \
    hasattr(torch.serialization, 'get_unsafe_globals_in_checkpoint')


def allow_runner_checkpoints() -> bool:
    """Allow-list the runner's checkpoint globals for ``torch.load(weights_only=True)``.

    Only where torch has an allow-list that takes ``(object, name)`` pairs (torch >= 2.5;
    ``weights_only=True`` became the default in 2.6). Older torch loads runner checkpoints
    with its default ``weights_only=False``, and nothing is changed.

    Returns:
        bool: Whether the allow-list was extended.
    """
    if not HAS_ALLOW_LIST:
        return False
    torch.serialization.add_safe_globals(runner_checkpoint_globals())
    return True


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: missing, truncated, damaged, unsafe, of another
    format, or not matching the model. The message names the file and what is wrong."""


# A zip file starts with a local file header; torch's legacy format with a pickled magic
# number (torch.serialization.MAGIC_NUMBER).
ZIP_MAGIC = b'PK\x03\x04'
LEGACY_MAGIC = 0x1950a86a20f9469cfc6c


def _is_tensor_data(name: str) -> bool:
    """Records under ``<archive>/data/`` hold tensor bytes; the rest is small metadata."""
    return '/data/' in name or name.startswith('data/')


def _has_checksums(archive: zipfile.ZipFile) -> bool:
    """False for archives saved after ``set_crc32_options(False)``: every record has CRC 0."""
    return any(info.CRC != 0 for info in archive.infolist() if info.file_size > 0)


def _damaged_record(archive: zipfile.ZipFile, tensor_data: bool) -> str | None:
    """What is wrong with the first damaged record (tensor data only if asked), or None."""
    checksums = _has_checksums(archive)
    for info in archive.infolist():
        if _is_tensor_data(info.filename) and not tensor_data:
            continue
        try:
            with archive.open(info) as record:  # checks the record's header
                # without checksums zipfile would call every non-empty record damaged
                while checksums and record.read(1 << 24):
                    pass
        except zipfile.BadZipFile as e:
            if 'CRC' in str(e):
                return (f'its record {info.filename!r} does not match its CRC-32 checksum '
                        '(the file changed after it was written)')
            return f'its record {info.filename!r} cannot be read ({e})'
    return None


def _legacy_header_ok(path: str) -> bool:
    """Whether ``path`` starts as torch's legacy (pre-1.6) format or a tar file does."""
    if tarfile.is_tarfile(path):
        return True
    with open(path, 'rb') as f:
        head = f.read(64)

    class NoGlobals(pickle.Unpickler):
        def find_class(self, module, name):
            raise pickle.UnpicklingError('not a magic number')

    try:
        return NoGlobals(io.BytesIO(head)).load() == LEGACY_MAGIC
    except Exception:
        return False


def _structure_problem(path: str, checksums: str) -> CheckpointError | None:
    """What is wrong with the file's structure, reading little of it.

    ``checksums``: ``'metadata'`` reads the small records (the pickle, the version) and
    checks their CRC-32, ``'all'`` every record (a full read).
    """
    size = os.path.getsize(path)
    if size == 0:
        return CheckpointError(f'checkpoint {path!r} is empty (0 bytes)')
    with open(path, 'rb') as f:
        head = f.read(len(ZIP_MAGIC))
    if head != ZIP_MAGIC:
        if _legacy_header_ok(path):
            return None
        return CheckpointError(
            f'{path!r} is not a PyTorch checkpoint: it is neither a zip archive (what '
            f'torch.save writes) nor torch\'s legacy format; it starts with {head!r}')
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if not any(n == 'data.pkl' or n.endswith('/data.pkl') for n in names):
                return CheckpointError(
                    f'{path!r} is a zip archive but not a PyTorch checkpoint: it has no '
                    f'data.pkl record (records: {names[:5]}{" ..." if len(names) > 5 else ""})')
            bad = _damaged_record(archive, tensor_data=checksums == 'all')
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        return CheckpointError(
            f'checkpoint {path!r} is truncated or damaged ({size} bytes): {e}; a PyTorch '
            'checkpoint is a zip archive whose directory is at its end, which this one lacks '
            'or has damaged (e.g. its writing or copying was interrupted)')
    if bad is not None:
        return CheckpointError(f'checkpoint {path!r} is damaged: {bad}')
    return None


def diagnose(path: str, error: BaseException) -> Exception | None:
    """Why loading the local file ``path`` failed with ``error``, as an error naming the file;
    None when the file is not the reason (e.g. a ``map_location`` without that device).

    Reads the file again, fully for a zip archive with checksums: run it only on failure.
    """
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        return FileNotFoundError(f'checkpoint file {path!r} does not exist')
    problem = _structure_problem(path, checksums='all')
    if problem is not None:
        return problem
    message = str(error)
    found = re.search(r'Unsupported (?:global: GLOBAL|class) (\S+)', message) \
        or re.search(r'Unsupported operand|Weights only load failed', message)
    if found:
        unsafe = found[1] if found.re.groups else message.splitlines()[0]
        return CheckpointError(
            f'checkpoint {path!r} holds objects that torch.load(weights_only=True) does not '
            f'load: {unsafe}. If you trust the file, allow them with '
            'torch.serialization.add_safe_globals([...]) or load it with '
            'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1')
    reading = isinstance(error, (pickle.UnpicklingError, EOFError)) or \
        re.search(r'PytorchStreamReader|zip archive|magic number', message)
    if reading:
        first = message.splitlines()[0] if message else ''
        return CheckpointError(f'{path!r} is not a readable PyTorch checkpoint (truncated or '
                               f'another kind of file): {type(error).__name__}: {first}')
    return None


@contextmanager
def explain_load_failure(path: str):
    """Re-raise a failure to load the local file ``path`` as :func:`diagnose` explains it;
    errors that are not about the file pass unchanged. Costs nothing when loading works."""
    try:
        yield
    except Exception as e:
        if '://' in str(path):  # a URL or another storage backend: not our file to read
            raise
        problem = diagnose(path, e)
        if problem is None:
            raise
        raise problem from e


def load_file(path: str, map_location='cpu') -> dict:
    """Read a checkpoint file (``.safetensors`` too) as ``torch.load`` does, with its default
    ``weights_only``; a file that fails to load gets an error naming it and what is wrong."""
    if path.endswith('.safetensors'):
        if not os.path.isfile(path):
            raise FileNotFoundError(f'checkpoint file {path!r} does not exist')
        from safetensors import SafetensorError
        from safetensors.torch import load_file as load_safetensors
        try:
            return load_safetensors(path, device=str(map_location or 'cpu'))
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f'{path!r} is not a readable safetensors file: {e}') from e
    with explain_load_failure(path):
        return torch.load(path, map_location=map_location)


def verify_checkpoint(path: str, checksums: bool = False) -> None:
    """Fail early on a local checkpoint file that cannot load: missing, empty, truncated,
    damaged in its metadata, or of another format.

    The tools call it before the Runner writes anything (the Runner creates its log folder
    and dumps its config before it loads checkpoints). It reads the zip directory and the
    small records, not the tensor data; the Runner's load is then the only full read.

    Args:
        path (str): The checkpoint file.
        checksums (bool): Also check the CRC-32 of every tensor record (a full read of the
            file), to find damage that ``torch.load`` does not notice. Defaults to False.

    Raises:
        FileNotFoundError: No such file.
        CheckpointError: What is wrong with the file.
    """
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint file {path!r} does not exist')
    problem = _structure_problem(path, checksums='all' if checksums else 'metadata')
    if problem is not None:
        raise problem


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


def download_advice(url: str, reason: str) -> str:
    """What to do when ``url`` cannot be downloaded: the file, where torch.hub looks for
    it, and the ``--cfg-options`` line that points a config at a local copy."""
    import torch.hub
    name = osp.basename(urlparse(url).path)
    cache = osp.join(torch.hub.get_dir(), 'checkpoints', name)
    return (f'could not download the checkpoint {url} ({reason}).\n'
            f'Fetch {name} on a machine that can reach it, e.g.\n'
            f'  wget {url}\n'
            f'then either put it at {cache} (torch.hub looks there before downloading), or '
            f'point the config at your copy:\n'
            f'  --cfg-options {BACKBONE_CHECKPOINT_KEY}=/path/to/{name}\n'
            f'(seplugin\'s detection configs name their starting weights there; for a '
            f'checkpoint given as load_from: --cfg-options load_from=/path/to/{name})')


class DownloadError(OSError):
    """A checkpoint URL could not be fetched; the message says what to do instead."""


def load_from_http(filename: str, map_location=None, model_dir: str | None = None):
    """mmengine's ``load_from_http`` with :func:`download_advice` as its error."""
    from mmengine.runner.checkpoint import load_from_http as mmengine_load_from_http
    try:
        return mmengine_load_from_http(filename, map_location=map_location,
                                       model_dir=model_dir)
    except OSError as e:  # URLError, HTTPError, timeouts, refused connections
        raise DownloadError(download_advice(filename, f'{type(e).__name__}: {e}')) from e


def use_explained_http_loader() -> None:
    """Make mmengine load ``http://``/``https://`` checkpoints with :func:`load_from_http`."""
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes=('http://', 'https://'), loader=load_from_http,
                                     force=True)
