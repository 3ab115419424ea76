"""Parameters, FLOPs and latency of configs, and the paper's architecture numbers.

    python tools/complexity.py --paper                      # the paper's tables, side by side
    python tools/complexity.py BASELINE_CONFIG SE_CONFIG [--shape H W] [--latency]

With several configs the first is the baseline and the others get ratios to it. The input
size follows the configs' task: 800x1333 for detectors (mmdet scope), 224x224 for
classifiers; one image per call. Latency is timed interleaved on the current device (GPU
when there is one), after warm-up runs, as medians.

``--paper`` prints four Markdown tables, each after a ``## <title>`` line with a stable
title (``seplugin.analysis.complexity.PAPER_TABLES``): ``parameters`` (last column
``yes``/``NO``: seplugin's exact count equals timm's and MMPretrain's; rows
``SEResNet-<depth>``, ``ResNet-50``), ``reduction ratio (Table 10)`` and ``stages (Table
13)`` (``(differs)`` marks a rounding that misses the paper), ``GFLOPs (Table 2)`` (last
column: the difference to the paper in percent).
"""
import argparse
import math
import os.path as osp
import sys

# Only the standard library up here: --help answers without loading torch or mmengine.
DEFAULT_SHAPES = {'detector': (800, 1333), 'classifier': (224, 224)}
WARMUP = 3


def paper() -> None:
    from seplugin.analysis.complexity import FLOP_CONVENTION, paper_tables
    say("building the paper's ResNets and SE-ResNets (18 to 152 layers) and counting their "
        'parameters and FLOPs at 224x224 (about a minute on a CPU)')
    print(FLOP_CONVENTION + '\n')
    for title, rows in paper_tables().items():
        print(f'## {title}\n')
        if title == 'parameters':
            print("The paper prints parameters in millions only; the exact counts are those "
                  "of implementations (timm's and MMPretrain's agree), not the paper's.\n")
            print('| model | paper (M, as printed) | timm and MMPretrain | seplugin | '
                  'seplugin = them |\n|---|---:|---:|---:|---|')
            for r in rows:
                paper = f"{r['paper']:.1f}" if r['paper'] is not None else '-'
                print(f"| {r['name']} | {paper} | {r['implementations']:,} | {r['ours']:,} | "
                      f"{'yes' if r['implementations'] == r['ours'] else 'NO'} |")
        elif title.startswith('GFLOPs'):
            print('| model | paper | seplugin | difference |\n|---|---:|---:|---:|')
            for r in rows:
                print(f"| {r['name']} | {r['paper']:.2f} | {r['ours']:.3f} | "
                      f"{100 * (r['ours'] / r['paper'] - 1):+.2f}% |")
        else:
            rounded = [round(r['ours'], 1) for r in rows]
            up = [math.ceil(round(r['ours'] * 10, 6)) / 10 for r in rows]
            print('| model | paper (M) | seplugin (exact) | rounded | rounded up |\n'
                  '|---|---:|---:|---:|---:|')
            for r, near, ceil in zip(rows, rounded, up):
                print(f"| {r['name']} | {r['paper']:.1f} | {r['ours'] * 1e6:,.0f} | "
                      f"{near:.1f}{'' if near == r['paper'] else ' (differs)'} | "
                      f"{ceil:.1f}{'' if ceil == r['paper'] else ' (differs)'} |")
            print(f"\nObservation, not a rule the paper states: ordinary rounding matches "
                  f"{sum(n == r['paper'] for n, r in zip(rounded, rows))} of {len(rows)} "
                  f"printed values, rounding up {sum(c == r['paper'] for c, r in zip(up, rows))}"
                  f" of {len(rows)}.")
        print()


def task_of(scope: str) -> str:
    """A config's task, as ``model_calls`` measures it: detectors in the mmdet scope."""
    return 'detector' if scope == 'mmdet' else 'classifier'


def say(message: str, end: str = '\n') -> None:
    """Progress on stderr, so that stdout stays the table."""
    print(message, end=end, file=sys.stderr, flush=True)


def counted(call, counter: list[int], total: int):
    """``call``, reporting the timing progress (``timing: 12/52 runs``) on stderr."""
    def run():
        result = call()
        counter[0] += 1
        say(f'\rtiming: {counter[0]}/{total} runs', end='\n' if counter[0] == total else '')
        return result
    return run


def configs(paths: list[str], shape: tuple[int, int] | None, latency: bool,
            repeats: int) -> None:
    import torch

    from seplugin.analysis.complexity import (
        FLOP_CONVENTION,
        build_from_config,
        count_flops,
        count_params,
        measure_latency,
        model_calls,
    )
    models, tasks = [], {}
    for path in paths:
        say(f'building {path}')
        model, scope = build_from_config(path)
        models.append((path, model, scope))
        tasks.setdefault(task_of(scope), []).append(path)
    if len(tasks) > 1:
        raise SystemExit('error: the configs are of different tasks, which are measured on '
                         'different inputs: ' + '; '.join(f'{task}: {", ".join(p)}'
                                                          for task, p in tasks.items()))
    task = next(iter(tasks))
    shape = shape or DEFAULT_SHAPES[task]
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    say(f'measuring {len(paths)} {task} config(s) at input {shape[0]}x{shape[1]}, batch 1, '
        f'on {device}' + (f'; latency: {WARMUP} warm-up and {repeats} timed runs per model, '
                          'interleaved, medians' if latency else ''))
    rows, calls = [], []
    for path, model, scope in models:
        say(f'counting FLOPs of {path}')
        module, inputs, call = model_calls(model, scope, shape)
        flops = count_flops(module, inputs)
        rows.append(dict(config=path, params=count_params(model), **flops))
        calls.append(call)
    if latency:
        counter, total = [0], len(calls) * (WARMUP + repeats)
        timed = [counted(call, counter, total) for call in calls]
        for row, seconds in zip(rows, measure_latency(timed, warmup=WARMUP, repeats=repeats)):
            row['latency_ms'] = seconds * 1e3
    columns = [c for c in ('params', 'total', 'backbone', 'neck', 'latency_ms')
               if all(c in r for r in rows)]
    names = {'total': 'GFLOPs', 'backbone': 'backbone GFLOPs', 'neck': 'neck GFLOPs',
             'params': 'params (M)', 'latency_ms': 'latency (ms)'}
    print(f'{task}s, input {shape[0]}x{shape[1]}, batch 1'
          + (f', latency: median of {repeats} runs on {device}' if latency else '')
          + f'; {FLOP_CONVENTION}\n')
    print('| config | ' + ' | '.join(names[c] for c in columns) + ' |')
    print('|---|' + '---:|' * len(columns))
    base = rows[0]
    for row in rows:
        cells = []
        for c in columns:
            scale = 1e6 if c == 'params' else 1e9 if c != 'latency_ms' else 1
            cell = f'{row[c] / scale:.3f}'
            if row is not base:
                cell += f' (x{row[c] / base[c]:.4f})'
            cells.append(cell)
        print(f"| {row['config']} | " + ' | '.join(cells) + ' |')


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('configs', nargs='*', help='baseline first, then the models to compare')
    parser.add_argument('--paper', action='store_true', help="print the paper's tables")
    parser.add_argument('--shape', type=int, nargs=2, default=None, metavar=('H', 'W'),
                        help='input size (default: 800 1333 for detectors, 224 224 for '
                             "classifiers, from the configs' default_scope)")
    parser.add_argument('--latency', action='store_true', help='also time the models')
    parser.add_argument('--repeats', type=int, default=10, help='timed runs per model')
    parser.add_argument('--verbose', action='store_true',
                        help='on an error, print its traceback')
    args = parser.parse_args(argv)
    if not args.paper and not args.configs:
        parser.error('give configs to measure, or --paper')
    if args.repeats < 1:
        parser.error(f'--repeats must be at least 1, got {args.repeats}')
    missing = [c for c in args.configs if not osp.isfile(c)]
    if missing:
        parser.error(f'no such config file: {", ".join(missing)}')
    from seplugin.cli.console import hide_setuptools_notice
    hide_setuptools_notice()
    if args.paper:
        paper()
    if args.configs:
        configs(args.configs, tuple(args.shape) if args.shape else None, args.latency,
                args.repeats)


if __name__ == '__main__':
    try:
        main()
    except Exception as error:
        from seplugin.cli.console import exit_on_error
        exit_on_error(error, verbose='--verbose' in sys.argv)
