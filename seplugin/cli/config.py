"""What tools/train.py and tools/test.py share: reading a config with its ``--cfg-options``,
the checks of options and data before any work, and building the runner, on one process or
several (torchrun, slurm, MPI; GPUs or CPUs). Their console output: :mod:`.console`.

The tools parse their arguments with the standard library before importing this package,
so that ``--help`` answers at once."""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from seplugin.engine.dist import (
    finish_distributed,
    init_distributed,
    resolve_dist_backend,
    set_cpu_model_wrapper,
)
from seplugin.engine.runner import CheckedRunner, EmptyDatasetError, explain_module_errors

__all__ = ['parse_cfg_options', 'load_config', 'require_keys', 'build_runner',
           'check_amp', 'check_resume', 'check_data_roots', 'MINI_DATA_COMMANDS',
           'finish_distributed', 'CheckedRunner', 'EmptyDatasetError',
           'explain_module_errors', 'TRAIN_KEYS', 'TEST_KEYS']

# What a config must have to train, and to test.
TRAIN_KEYS = ('model', 'train_dataloader', 'train_cfg', 'optim_wrapper')
TEST_KEYS = ('model', 'test_dataloader', 'test_evaluator', 'test_cfg')


def parse_cfg_options(items: list[str] | dict | None) -> dict | None:
    """``--cfg-options key=value ...`` as a dict, parsed as mmengine's ``DictAction`` does
    (the tools collect the strings, so that ``--help`` needs no mmengine)."""
    if not items or isinstance(items, dict):
        return items or None
    namespace = argparse.Namespace()
    DictAction(option_strings=['--cfg-options'], dest='cfg_options')(
        None, namespace, list(items))
    return namespace.cfg_options


def load_config(path: str, cfg_options: list[str] | dict | None = None,
                launcher: str = 'none', work_dir: str | None = None,
                dist_backend: str | None = None) -> Config:
    """Read a config, apply ``--cfg-options`` (``key=value`` strings or a dict), the
    launcher and the work dir.

    Without ``work_dir`` the config's own is kept, else ``./work_dirs/<config name>``.
    For a distributed launcher the backend is settled here (see
    :func:`seplugin.engine.dist.resolve_dist_backend`): the note saying that the config's
    ``nccl`` was replaced is kept in ``cfg.dist_backend_note`` for the log.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file {path!r} does not exist')
    cfg = Config.fromfile(path)
    cfg_options = parse_cfg_options(cfg_options)
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


def check_amp(asked_by: str = '--amp') -> None:
    """Mixed precision needs a device that mmengine's ``AmpOptimWrapper`` accepts (CUDA,
    NPU, MLU, MUSA); say so before anything is built, instead of its bare
    ``AssertionError``. ``asked_by`` names what asked for it."""
    from mmengine.device import (
        is_cuda_available,
        is_mlu_available,
        is_musa_available,
        is_npu_available,
    )
    if not (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available()):
        raise RuntimeError(
            f'{asked_by} (mixed precision) needs a GPU, but torch.cuda.is_available() is '
            "False (and there is no NPU, MLU or MUSA device): mmengine's AmpOptimWrapper "
            f'does not run on the CPU; train without {asked_by}')


def check_resume(work_dir: str) -> str:
    """The checkpoint that ``--resume`` without a path continues from: the one named in
    ``work_dir``'s ``last_checkpoint``. Nothing to resume is an error (mmengine would log
    "Auto resumed from the latest checkpoint None" and train from scratch)."""
    from mmengine.runner import find_latest_checkpoint
    if not osp.isdir(work_dir):
        raise FileNotFoundError(
            f'--resume: the work dir {work_dir!r} does not exist, so there is nothing to '
            'resume; check --work-dir (default: work_dirs/<config name>), or give the '
            'checkpoint: --resume PATH')
    checkpoint = find_latest_checkpoint(work_dir)
    if not checkpoint:
        found = sorted(f for f in os.listdir(work_dir) if f.endswith('.pth'))
        raise FileNotFoundError(
            f'--resume: the work dir {work_dir!r} has no last_checkpoint file (written with '
            'each checkpoint of a training), so there is nothing to resume'
            + (f'; it holds {found[:5]}: give one as --resume PATH' if found else
               '; check --work-dir, or give the checkpoint: --resume PATH'))
    return checkpoint


# The commands that generate the bundled mini data sets, by the name of their folder.
MINI_DATA_COMMANDS = {
    'mini_coco': 'python -m seplugin.datasets.mini_coco --out {root}',
    'mini_imagenet': 'python -m seplugin.datasets.mini_cls imagenet --out {root}',
    'mini_places365': 'python -m seplugin.datasets.mini_cls places365 --out {root}',
}


def _data_roots(dataset) -> list[str]:
    """The ``data_root`` of a dataset config and of the datasets it wraps."""
    if not isinstance(dataset, dict):
        return []
    roots = [dataset['data_root']] if isinstance(dataset.get('data_root'), str) else []
    inner = dataset.get('datasets') or [dataset.get('dataset')]
    return roots + [root for d in inner for root in _data_roots(d)]


def check_data_roots(cfg: Config, loaders: tuple[str, ...]) -> None:
    """Every local ``data_root`` of these dataloaders exists; a missing one of the bundled
    mini data sets gets the command that generates it."""
    for loader in loaders:
        for root in _data_roots((cfg.get(loader) or {}).get('dataset')):
            if not root or '://' in root or osp.isdir(root):
                continue
            name = osp.basename(osp.normpath(root))
            command = MINI_DATA_COMMANDS.get(name)
            hint = (f'generate it with: {command.format(root=root.rstrip("/"))}' if command
                    else 'point the config at the data with --cfg-options '
                         f'{loader}.dataset.data_root=DIR (see docs/data.md)')
            where = '' if osp.isabs(root) else f' (relative to {os.getcwd()!r})'
            raise FileNotFoundError(f'{loader}.dataset.data_root {root!r} does not '
                                    f'exist{where}; {hint}')


def build_runner(cfg: Config) -> Runner:
    """The config's runner: ``runner_type`` when set, else :class:`CheckedRunner`.

    For a distributed launcher, the process group is started first (so that CPUs work, see
    :mod:`seplugin.engine.dist`).
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
