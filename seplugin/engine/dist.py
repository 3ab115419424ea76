"""Distributed runs on GPUs and on CPUs: the backend, process-group start, DDP and SyncBN.

mmengine's launchers (``--launcher pytorch|slurm|mpi``) are written for GPUs: they call
``torch.cuda.set_device`` before starting the process group, the Runner wraps the model in
DDP with ``device_ids=[LOCAL_RANK]``, and the OpenMMLab base configs ask for the ``nccl``
backend. None of this works on a machine without CUDA. The functions here make the same
launchers work on CPUs with ``gloo``, and leave GPU runs exactly as mmengine does them.
"""
import gc
from contextlib import contextmanager

import torch
from mmengine.config import Config
from mmengine.dist import init_dist, is_distributed
from mmengine.utils.dl_utils import set_multi_processing

BACKENDS = ('nccl', 'gloo', 'mpi', 'ucc')


def _backend_from_options(cfg_options: dict | None) -> str | None:
    """The backend that ``--cfg-options`` sets explicitly, if any."""
    for key, value in (cfg_options or {}).items():
        if key == 'env_cfg.dist_cfg.backend':
            return value
        if key == 'env_cfg.dist_cfg' and isinstance(value, dict) and 'backend' in value:
            return value['backend']
        if key == 'env_cfg' and isinstance(value, dict) \
                and isinstance(value.get('dist_cfg'), dict) and 'backend' in value['dist_cfg']:
            return value['dist_cfg']['backend']
    return None


def resolve_dist_backend(cfg: Config, cli_backend: str | None = None,
                         cfg_options: dict | None = None,
                         cuda_available: bool | None = None) -> tuple[str, str | None]:
    """Choose the ``torch.distributed`` backend of a run and write it into the config.

    - Set on the command line (``--dist-backend``, or ``--cfg-options
      env_cfg.dist_cfg.backend=...``): used as given; ``nccl`` without CUDA is an error.
    - ``nccl`` from the config (MMDetection's and MMPretrain's base configs set it) on a
      machine without CUDA: replaced by ``gloo``, with a note saying so.
    - Anything else from the config (``gloo``, ``mpi``, ...): used as given.
    - Nothing set: ``nccl`` when CUDA is available, else ``gloo``.

    Args:
        cfg (Config): The run's config; ``env_cfg.dist_cfg.backend`` is set in place.
        cli_backend (str, optional): ``--dist-backend``.
        cfg_options (dict, optional): ``--cfg-options``, to tell an explicit choice from
            a value inherited from a base config.
        cuda_available (bool, optional): Defaults to ``torch.cuda.is_available()``.

    Returns:
        tuple[str, str | None]: The backend, and a note for the log when the config's
        value was replaced (else None).
    """
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    # (ConfigDict.setdefault may hand back a copy: read, then assign back at the end)
    dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg', None) or {})
    explicit = cli_backend or _backend_from_options(cfg_options)
    note = None
    if explicit:
        if explicit not in BACKENDS:
            raise ValueError(f'unknown distributed backend {explicit!r}; expected one of '
                             f'{list(BACKENDS)}')
        if explicit == 'nccl' and not cuda_available:
            raise RuntimeError(
                "distributed backend 'nccl' was asked for on the command line, but CUDA is "
                'not available on this machine (torch.cuda.is_available() is False) and '
                "nccl runs on GPUs only; use --dist-backend gloo to train on the CPUs")
        backend = explicit
    else:
        configured = dist_cfg.get('backend')
        if configured is None:
            backend = 'nccl' if cuda_available else 'gloo'
        elif configured == 'nccl' and not cuda_available:
            backend = 'gloo'
            note = ("the config's env_cfg.dist_cfg.backend is 'nccl', but CUDA is not "
                    "available on this machine: using 'gloo' on the CPUs instead (pass "
                    '--dist-backend to choose the backend explicitly)')
        else:
            if configured not in BACKENDS:
                raise ValueError(f'unknown distributed backend {configured!r} in the '
                                 f'config (env_cfg.dist_cfg.backend); expected one of '
                                 f'{list(BACKENDS)}')
            backend = configured
    dist_cfg['backend'] = backend
    if cfg.get('env_cfg') is None:
        cfg.env_cfg = dict(dist_cfg=dist_cfg)
    else:
        cfg.env_cfg.dist_cfg = dist_cfg
    return backend, note


@contextmanager
def _no_cuda_set_device():
    """mmengine's launchers call ``torch.cuda.set_device(local_rank)`` unconditionally,
    which raises on a machine without CUDA; there is no device to pick, so skip it."""
    original = torch.cuda.set_device
    torch.cuda.set_device = lambda device: None
    try:
        yield
    finally:
        torch.cuda.set_device = original


def init_distributed(cfg: Config) -> None:
    """Start the process group of ``cfg.launcher`` with ``cfg.env_cfg.dist_cfg``, with
    mmengine's ``init_dist`` (which reads torchrun's, slurm's or MPI's environment).

    Does nothing when the launcher is ``'none'`` or a process group exists already. The
    Runner then finds the group started and uses it.
    """
    if cfg.get('launcher', 'none') == 'none' or is_distributed():
        return
    env_cfg = cfg.get('env_cfg', {})
    dist_cfg = dict(env_cfg.get('dist_cfg', {}))
    # What the Runner does before init_dist (else init_dist picks 'spawn' and the Runner
    # warns when it sets the config's start method, 'fork' by default).
    set_multi_processing(**env_cfg.get('mp_cfg', {}), distributed=True)
    if torch.cuda.is_available():
        init_dist(cfg.launcher, **dist_cfg)
    else:
        with _no_cuda_set_device():
            init_dist(cfg.launcher, **dist_cfg)


def finish_distributed() -> None:
    """End the process group after a successful run; call it once the Runner is gone.

    Left to interpreter exit, the gloo group's threads are torn down in no defined order,
    and a process that did all its work can still die with "terminate called without an
    active exception" (SIGABRT), failing the whole torchrun job. ``destroy_process_group``
    only drops torch's own references: the DDP wrapper of a Runner that reference cycles
    keep alive holds the group until the interpreter's final collection. Collecting first
    lets the group go here, while the interpreter is whole.
    """
    if is_distributed():
        gc.collect()
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def set_cpu_model_wrapper(cfg: Config) -> None:
    """On CPUs, DDP must get ``device_ids=None``: the Runner's default wrapper passes
    ``[LOCAL_RANK]``, which DDP refuses for a model on the CPU.

    Without a ``model_wrapper_cfg``, sets mmengine's default one (``MMDistributedDataParallel``,
    ``broadcast_buffers=False``, the config's ``find_unused_parameters``) with
    ``device_ids=None``; a DDP-type ``model_wrapper_cfg`` of the config gets
    ``device_ids=None`` unless it sets ``device_ids`` itself.
    """
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return
    wrapper = cfg.get('model_wrapper_cfg')
    if wrapper is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
        return
    from mmengine.registry import MODEL_WRAPPERS
    from torch.nn.parallel import DistributedDataParallel
    wrapper_type = wrapper.get('type', 'MMDistributedDataParallel')
    wrapper_cls = MODEL_WRAPPERS.get(wrapper_type) if isinstance(wrapper_type, str) \
        else wrapper_type
    if isinstance(wrapper_cls, type) and issubclass(wrapper_cls, DistributedDataParallel):
        wrapper.setdefault('device_ids', None)


SYNC_BN_TYPES = ('SyncBatchNorm',)  # torch's and mmcv's class names


def check_sync_bn(model: torch.nn.Module, backend: str | None,
                  sync_bn: str | None = None) -> None:
    """Fail with a clear message when a distributed run on the CPU would use SyncBN.

    ``torch.nn.SyncBatchNorm`` (``norm_cfg=dict(type='SyncBN')``, or the config's
    ``sync_bn='torch'``) and mmcv's ``SyncBatchNorm`` (``type='MMSyncBN'``,
    ``sync_bn='mmcv'``) synchronise through GPU kernels: on CPUs, DDP refuses the model
    ("SyncBatchNorm layers only work with GPU modules"), naming neither the config nor a
    way out. Single-process runs are fine: mmengine turns SyncBN back into BN when not
    distributed; GPU runs are left alone.

    Args:
        model (nn.Module): The model, before it is wrapped in DDP.
        backend (str, optional): The distributed backend, for the message.
        sync_bn (str, optional): The config's ``sync_bn`` (BN layers to convert).

    Raises:
        RuntimeError: Names the first SyncBN layers (or ``sync_bn``), the device and
            backend, and what to use instead.
    """
    from mmengine.device import get_device
    if not is_distributed() or get_device() != 'cpu':
        return
    layers = [name for name, module in model.named_modules()
              if type(module).__name__ in SYNC_BN_TYPES]
    if layers:
        found = 'the model has SyncBN layers (' + ', '.join(layers[:3]) + (
            f' and {len(layers) - 3} more' if len(layers) > 3 else '') + ')'
    elif sync_bn:
        found = f"the config's sync_bn={sync_bn!r} turns the model's BN layers into SyncBN"
    else:
        return
    raise RuntimeError(
        f'{found}, which synchronise through GPU kernels only, but this distributed run is '
        f'on the CPU (backend {backend!r}). Use norm_cfg=dict(type=\'BN\') (each process '
        'normalises over its own batch), e.g. --cfg-options model.backbone.norm_cfg.type=BN '
        "(and the same for necks and heads that set norm_cfg), without the config's "
        'sync_bn; or train on GPUs with the nccl backend')
