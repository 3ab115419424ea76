"""Train a detector or a classifier from a config: ``python tools/train.py CONFIG``.

The CLI of mmdet's and mmpretrain's ``tools/train.py``; which library's runner settings apply
comes from the config's ``default_scope``. Runs on the GPU when there is one, else the CPU.
The console shows the phases and progress of the run; the config, hooks and environment go
to the log file under the work dir (``--verbose`` prints everything).
"""
import argparse
import importlib.util
import os.path as osp
import runpy
from types import SimpleNamespace

# Only the standard library up here: --help answers without loading torch or mmengine.
# seplugin/cli/options.py by its path (``import seplugin`` would load torch; find_spec
# finds the package and imports nothing).
OPTIONS = SimpleNamespace(**runpy.run_path(osp.join(
    osp.dirname(importlib.util.find_spec('seplugin').origin), 'cli', 'options.py')))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--amp', action='store_true',
                        help='mixed-precision training (needs a GPU)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by the actual batch size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or from the latest one in the '
                             'work dir when no path is given')
    OPTIONS.add_shared_options(parser, 'where logs and checkpoints go (default: '
                                       'work_dirs/<config name>)', 'train_cfg.max_iters=10')
    return parser.parse_args(argv)


def main(args: argparse.Namespace | None = None) -> None:
    if args is None:
        args = parse_args()
    from mmengine.runner import find_latest_checkpoint

    from seplugin.checkpoint import verify_checkpoint
    from seplugin.cli.config import (
        TRAIN_KEYS,
        build_runner,
        check_amp,
        check_data_roots,
        check_resume,
        explain_module_errors,
        load_config,
        require_keys,
    )
    from seplugin.cli.console import phase, prints_to_log

    # Options first: a mistake here costs no config dump and no model build.
    if args.amp:
        check_amp()
    cfg = load_config(args.config, args.cfg_options, args.launcher, args.work_dir,
                      args.dist_backend)
    require_keys(cfg, TRAIN_KEYS, 'training', args.config)
    if not args.amp and cfg.optim_wrapper.get('type') == 'AmpOptimWrapper':
        check_amp("the config's optim_wrapper.type='AmpOptimWrapper'")
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise KeyError(f'--auto-scale-lr needs auto_scale_lr.base_batch_size in '
                           f'{args.config}')
        cfg.auto_scale_lr.enable = True
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, check_resume(cfg.work_dir)
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if cfg.get('resume'):
        # A bad checkpoint fails here, before the runner writes anything to the work dir.
        checkpoint = cfg.get('load_from') or find_latest_checkpoint(cfg.work_dir)
        if checkpoint and '://' not in checkpoint:
            verify_checkpoint(checkpoint)
    check_data_roots(cfg, ('train_dataloader', 'val_dataloader'))
    if cfg.get('randomness', {}).get('deterministic'):
        # A deterministic run should also resume deterministically (see the hook).
        hooks = list(cfg.get('custom_hooks') or [])
        if not any(h.get('type') == 'ResumableRandomnessHook' for h in hooks):
            cfg.custom_hooks = hooks + [dict(type='ResumableRandomnessHook')]
    phase(f'building the runner for {args.config}')
    runner = build_runner(cfg)
    device = next(runner.model.parameters()).device.type
    phase(f'training on {device}; work dir {runner.work_dir}, full log '
          f'{runner.logger.log_file}', runner.logger)
    with explain_module_errors(runner.model), prints_to_log():
        runner.train()
    phase(f'done; checkpoints in {runner.work_dir}', runner.logger)


if __name__ == '__main__':
    OPTIONS.main_block(parse_args, main)
