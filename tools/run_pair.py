"""Train and test a baseline and an SE config for several seeds, then compare them.

    python tools/run_pair.py BASELINE_CONFIG SE_CONFIG [--seeds 0 1 2] [--work-dir DIR]
        [--paper KEY] [--cfg-options key=value ...]

Both configs get identical settings (the same seeds and --cfg-options); runs go one after
another, baseline and SE alternating per seed, each through tools/train.py and then
tools/test.py on its last checkpoint (seplugin.engine.pairs). The comparison reads exactly
the runs made here, paired by seed (the paired t-test), and lists the failed ones.
"""
import argparse
import os.path as osp
import sys

TOOLS = osp.dirname(osp.abspath(__file__))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('baseline', help='baseline config')
    parser.add_argument('se', help='SE config')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--work-dir', default='work_dirs/pair')
    parser.add_argument('--paper', help="the paper's rows to show (see tools/compare.py)")
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='applied to both configs alike')
    parser.add_argument('--verbose', action='store_true',
                        help='on an error, print its traceback')
    args = parser.parse_args(argv)
    for config in (args.baseline, args.se):
        if not osp.isfile(config):
            parser.error(f'config file {config!r} does not exist')

    from seplugin.engine.pairs import run_pairs
    from seplugin.paper import PAPER_RESULTS
    if args.paper is not None and args.paper not in PAPER_RESULTS:  # before hours of training
        parser.error(f'--paper {args.paper!r}: expected one of {sorted(PAPER_RESULTS)}')
    return run_pairs(args.baseline, args.se, args.seeds, args.work_dir, args.cfg_options,
                     TOOLS, args.paper, args.verbose)


if __name__ == '__main__':
    try:
        raise SystemExit(main())
    except Exception as error:
        from seplugin.cli.console import exit_on_error
        exit_on_error(error, verbose='--verbose' in sys.argv)
