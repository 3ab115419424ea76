"""Evaluate a checkpoint: ``python tools/test.py CONFIG CHECKPOINT``.

The CLI of mmdet's and mmpretrain's ``tools/test.py``, for detection and classification
configs alike (the config's ``default_scope`` decides). Runs on the GPU when there is one.
"""
import argparse

from seplugin.apis import (
    TEST_KEYS,
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
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where the evaluation metrics are written')
    parser.add_argument('--out', help='dump the raw predictions to this pickle file')
    parser.add_argument('--show-dir', help='draw predictions into images under this folder '
                                           '(relative to the run\'s log dir)')
    add_common_args(parser, 'test_dataloader.batch_size=4')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options, args.launcher, args.work_dir,
                      args.dist_backend)
    require_keys(cfg, TEST_KEYS, 'testing', args.config)
    if '://' not in args.checkpoint:
        verify_checkpoint(args.checkpoint)  # before the runner writes anything
    cfg.load_from = args.checkpoint
    detection = cfg.get('default_scope') == 'mmdet'
    if args.show_dir:
        vis = cfg.default_hooks.visualization
        if detection:
            vis.draw, vis.test_out_dir = True, args.show_dir
        else:
            vis.enable, vis.out_dir = True, args.show_dir
    runner = build_runner(cfg)
    if args.out:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError(f'--out must end with .pkl or .pickle, got {args.out!r}')
        if detection:
            from mmdet.evaluation import DumpDetResults
            runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
        else:
            from mmengine.evaluator import DumpResults  # mmpretrain has none of its own
            runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
    with explain_module_errors(runner.model):
        runner.test()


if __name__ == '__main__':
    main()
    finish_distributed()  # with the runner gone
