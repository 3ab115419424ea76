"""Compare SE runs against baseline runs: mean +- std over seeds, Welch's t, the paper.

    python tools/compare.py --se WORK_DIR [WORK_DIR ...] --baseline WORK_DIR [WORK_DIR ...]
        [--task detection|classification] [--paper coco-r50|coco-r101|imagenet-r50|
        imagenet-r101|places365-r152] [--out-dir DIR]

Each work dir is one run (one seed) as mmengine writes it; its newest tools/test.py results
enter the table. Runs without test results (unfinished, failed, or validated only) are
listed under the table, never averaged in. A difference is called significant only with at
least 3 seeds per model, by Welch's t-test at 5%; intervals are 95% t intervals. The ImageNet
top-1 of each model's starting weights is shown next to the results. Writes compare.md,
compare.csv, metrics.png and curves.png.
"""
import argparse
import os
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
    from seplugin.analysis.compare import (
        PAPER,
        compare,
        detect_task,
        markdown,
        plot,
        read_run,
        starting_weights,
        write_csv,
    )
    from seplugin.cli.console import hide_setuptools_notice
    hide_setuptools_notice()
    if args.paper is not None and args.paper not in PAPER:
        parser.error(f'--paper {args.paper!r}: expected one of {sorted(PAPER)}')
    if not any(osp.isdir(d) for d in args.se + args.baseline):
        # one missing run is listed under the table; none at all is a mistyped command
        parser.error(f'none of the work dirs exists: {", ".join(args.se + args.baseline)} '
                     '(give the --work-dir of each run)')
    task = args.task or detect_task(args.se + args.baseline)
    se = [read_run(d, task) for d in args.se]
    baseline = [read_run(d, task) for d in args.baseline]
    problems = [f'{r.work_dir}: {r.problem}' for r in se + baseline if r.problem]
    problems += [f'{r.work_dir}: no test results (only validation metrics: an unfinished '
                 'run, or tools/test.py not run)' for r in se + baseline if r.source == 'val']
    se = [r for r in se if r.source == 'test']
    baseline = [r for r in baseline if r.source == 'test']
    rows = compare(se, baseline, task)
    weights = {name: [starting_weights(r.work_dir) for r in runs]
               for name, runs in (('baseline', baseline), ('se', se))}
    os.makedirs(args.out_dir, exist_ok=True)
    text = markdown(rows, args.paper, problems, weights)
    with open(osp.join(args.out_dir, 'compare.md'), 'w') as f:
        f.write(text + '\n')
    write_csv(rows, osp.join(args.out_dir, 'compare.csv'))
    pngs = plot(rows, se, baseline, task, args.out_dir)
    print(text)
    print(f'\nwrote compare.md, compare.csv, {", ".join(osp.basename(p) for p in pngs)} '
          f'to {args.out_dir}')
    return 0 if rows else 1


if __name__ == '__main__':
    try:
        raise SystemExit(main())
    except Exception as error:
        from seplugin.cli.console import exit_on_error
        exit_on_error(error, verbose='--verbose' in sys.argv)
