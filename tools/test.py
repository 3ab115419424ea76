"""Evaluate a checkpoint: ``python tools/test.py CONFIG CHECKPOINT``.

The CLI of mmdet's and mmpretrain's ``tools/test.py``, for detection and classification
configs alike (the config's ``default_scope`` decides). Runs on the GPU when there is one.
The console shows the phases, progress and metrics; the config, hooks and environment go
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

OUT_EXTENSIONS = ('.pkl', '.pickle')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='write the predictions to this pickle file (.pkl or '
                                      '.pickle)')
    parser.add_argument('--show-dir', help='draw every test image with its prediction into '
                                           "this folder, relative to the run's log dir "
                                           '(<work dir>/<timestamp>/)')
    OPTIONS.add_shared_options(parser, 'where the evaluation metrics are written '
                                       '(default: work_dirs/<config name>)',
                               'test_dataloader.batch_size=4')
    return parser.parse_args(argv)


def check_options(args: argparse.Namespace) -> None:
    """The options that need no config, checked before anything is loaded."""
    if args.out is not None and not args.out.endswith(OUT_EXTENSIONS):
        raise ValueError(f'--out must end with {" or ".join(OUT_EXTENSIONS)} (a pickle '
                         f'file), got {args.out!r}')


def main(args: argparse.Namespace | None = None) -> None:
    if args is None:
        args = parse_args()
    check_options(args)
    from seplugin.checkpoint import verify_checkpoint
    from seplugin.cli.config import (
        TEST_KEYS,
        build_runner,
        check_data_roots,
        explain_module_errors,
        load_config,
        require_keys,
    )
    from seplugin.cli.console import phase, prints_to_log
    from seplugin.engine.outputs import DumpCompactResults, show_predictions

    cfg = load_config(args.config, args.cfg_options, args.launcher, args.work_dir,
                      args.dist_backend)
    require_keys(cfg, TEST_KEYS, 'testing', args.config)
    if '://' not in args.checkpoint:
        verify_checkpoint(args.checkpoint)  # before the runner writes anything
    check_data_roots(cfg, ('test_dataloader',))
    cfg.load_from = args.checkpoint
    detection = cfg.get('default_scope') == 'mmdet'
    phase(f'building the runner for {args.config}')
    runner = build_runner(cfg)
    if args.show_dir:
        where = show_predictions(runner, args.show_dir, detection)
        phase(f'drawing every test image with its prediction into {where}', runner.logger)
    if args.out:
        if detection:
            from mmdet.evaluation import DumpDetResults
            runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
        else:
            runner.test_evaluator.metrics.append(DumpCompactResults(out_file_path=args.out))
    phase(f'testing {args.checkpoint}; full log {runner.logger.log_file}', runner.logger)
    with explain_module_errors(runner.model), prints_to_log():
        metrics = runner.test()
    phase('metrics: ' + ', '.join(f'{k} {v:.4f}' if isinstance(v, float) else f'{k} {v}'
                                  for k, v in (metrics or {}).items()), runner.logger)


if __name__ == '__main__':
    OPTIONS.main_block(parse_args, main)
