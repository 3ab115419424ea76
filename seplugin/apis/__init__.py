"""What tools/train.py and tools/test.py share: their common options, reading a config and
building its runner, on one process or several (torchrun, slurm, MPI; GPUs or CPUs)."""
import argparse
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from .dist import (
    BACKENDS,
    finish_distributed,
    init_distributed,
    resolve_dist_backend,
    set_cpu_model_wrapper,
)
from .runner import CheckedRunner, EmptyDatasetError, explain_module_errors

__all__ = ['add_common_args', 'load_config', 'require_keys', 'build_runner',
           'finish_distributed', 'CheckedRunner', 'EmptyDatasetError',
           'explain_module_errors', 'TRAIN_KEYS', 'TEST_KEYS']

# What a config must have to train, and to test.
TRAIN_KEYS = ('model', 'train_dataloader', 'train_cfg', 'optim_wrapper')
TEST_KEYS = ('model', 'test_dataloader', 'test_evaluator', 'test_cfg')


def add_common_args(parser: argparse.ArgumentParser, example: str) -> None:
    """``--cfg-options``, ``--launcher``, ``--dist-backend`` and ``--local-rank``."""
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help=f'override config settings, e.g. {example}')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--dist-backend', choices=BACKENDS,
                        help='torch.distributed backend of a distributed run (default: the '
                             "config's; nccl on GPUs, gloo without CUDA)")
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def load_config(path: str, cfg_options: dict | None = None, launcher: str = 'none',
                work_dir: str | None = None, dist_backend: str | None = None) -> Config:
    """Read a config, apply ``--cfg-options``, the launcher and the work dir.

    Without ``work_dir`` the config's own is kept, else ``./work_dirs/<config name>``.
    For a distributed launcher the backend is settled here (see
    :func:`seplugin.apis.dist.resolve_dist_backend`): the note saying that the config's
    ``nccl`` was replaced is kept in ``cfg.dist_backend_note`` for the log.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file {path!r} does not exist')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])
    if launcher != 'none':
        _, note = resolve_dist_backend(cfg, dist_backend, cfg_options)
        if note:
            cfg.dist_backend_note = note
    elif dist_backend:
        raise ValueError(f'--dist-backend {dist_backend} needs a distributed launcher '
                         '(--launcher pytorch|slurm|mpi, as tools/dist_train.sh passes)')
    return cfg


def require_keys(cfg: Config, keys: tuple[str, ...], purpose: str, path: str) -> None:
    """Fail with the missing keys named, not with ``KeyError: 'model'`` from the Runner."""
    missing = [key for key in keys if cfg.get(key) is None]
    if missing:
        raise KeyError(f'config {path!r} has no {", ".join(missing)}; {purpose} needs '
                       f'{", ".join(keys)} (set them in the config or a _base_ config)')


def build_runner(cfg: Config) -> Runner:
    """The config's runner: ``runner_type`` when set, else :class:`CheckedRunner`.

    For a distributed launcher, the process group is started first (so that CPUs work, see
    :mod:`seplugin.apis.dist`).
    """
    import seplugin  # noqa: F401  (registers modules, allow-lists checkpoint types)
    note = cfg.pop('dist_backend_note', None)
    if cfg.get('launcher', 'none') != 'none':
        init_distributed(cfg)
        set_cpu_model_wrapper(cfg)
    if 'runner_type' in cfg:
        runner = RUNNERS.build(cfg)
    else:
        runner = CheckedRunner.from_cfg(cfg)
    if note:
        runner.logger.warning(note)
    return runner
