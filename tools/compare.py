"""Compare SE runs against baseline runs: mean +- std over seeds, a t-test, the paper.

    python tools/compare.py --se WORK_DIR [WORK_DIR ...] --baseline WORK_DIR [WORK_DIR ...]
        [--task detection|classification] [--paper coco-r50|coco-r101|imagenet-r50|
        imagenet-r101|places365-r152] [--out-dir DIR]

Each work dir is one run (one seed) as mmengine writes it: of each, the newest training
run and the newest test run after it enter the table, and the table says which (their
timestamps). Runs without such test results (unfinished, failed, or validated only) are
listed under the table, never averaged in. One primary metric (box AP, top-1) is tested at
5%, the others are secondary with Holm's correction; runs that record the same seeds on
both sides get the paired t-test, others Welch's, with at least 3 seeds per model.
Intervals are 95% t intervals. The ImageNet top-1 of each model's starting weights is shown
next to the results. Writes compare.md, compare.csv, metrics.png and curves.png.
"""
import argparse
import os.path as osp
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--se', nargs='+', required=True, help='work dirs of SE runs')
    parser.add_argument('--baseline', nargs='+', required=True, help='work dirs of baselines')
    parser.add_argument('--task', choices=['detection', 'classification'],
                        help='default: from the metrics the runs logged')
    parser.add_argument('--paper', help="the paper's rows to show, e.g. coco-r50 (a name it "
                        'does not know gets the list)')
    parser.add_argument('--out-dir', default='work_dirs/compare')
    parser.add_argument('--verbose', action='store_true',
                        help='on an error, print its traceback')
    args = parser.parse_args(argv)

    # after parsing: --help answers before torch and the OpenMMLab libraries are imported
    from seplugin.analysis.compare import compare_dirs
    from seplugin.cli.console import hide_setuptools_notice
    from seplugin.paper import PAPER_RESULTS
    hide_setuptools_notice()
    if args.paper is not None and args.paper not in PAPER_RESULTS:
        parser.error(f'--paper {args.paper!r}: expected one of {sorted(PAPER_RESULTS)}')
    if not any(osp.isdir(d) for d in args.se + args.baseline):
        # one missing run is listed under the table; none at all is a mistyped command
        parser.error(f'none of the work dirs exists: {", ".join(args.se + args.baseline)} '
                     '(give the --work-dir of each run)')
    return compare_dirs(args.se, args.baseline, args.task, args.out_dir, args.paper)


if __name__ == '__main__':
    try:
        raise SystemExit(main())
    except Exception as error:
        from seplugin.cli.console import exit_on_error
        exit_on_error(error, verbose='--verbose' in sys.argv)
