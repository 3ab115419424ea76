"""Train a detector or a classifier from a config: ``python tools/train.py CONFIG``.

The CLI of mmdet's and mmpretrain's ``tools/train.py``; which library's runner settings apply
comes from the config's ``default_scope``. Runs on the GPU when there is one, else the CPU.
"""
import argparse

from mmengine.runner import find_latest_checkpoint

from seplugin.apis import (
    TRAIN_KEYS,
    add_common_args,
    build_runner,
    explain_module_errors,
    finish_distributed,
    load_config,
    require_keys,
)
from seplugin.checkpoint import verify_checkpoint


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument('--amp', action='store_true', help='mixed-precision training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by the actual batch size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or from the latest one in the '
                             'work dir when no path is given')
    add_common_args(parser, 'train_cfg.max_iters=10')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options, args.launcher, args.work_dir,
                      args.dist_backend)
    require_keys(cfg, TRAIN_KEYS, 'training', args.config)
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise KeyError(f'--auto-scale-lr needs auto_scale_lr.base_batch_size in '
                           f'{args.config}')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if cfg.get('resume'):
        # A bad checkpoint fails here, before the runner writes anything to the work dir.
        checkpoint = cfg.get('load_from') or find_latest_checkpoint(cfg.work_dir)
        if checkpoint and '://' not in checkpoint:
            verify_checkpoint(checkpoint)
    if cfg.get('randomness', {}).get('deterministic'):
        # A deterministic run should also resume deterministically (see the hook).
        hooks = list(cfg.get('custom_hooks') or [])
        if not any(h.get('type') == 'ResumableRandomnessHook' for h in hooks):
            cfg.custom_hooks = hooks + [dict(type='ResumableRandomnessHook')]
    runner = build_runner(cfg)
    with explain_module_errors(runner.model):
        runner.train()


if __name__ == '__main__':
    main()
    finish_distributed()  # with the runner gone
