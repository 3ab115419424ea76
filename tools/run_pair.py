"""Train and test a baseline and an SE config for several seeds, then compare them.

    python tools/run_pair.py BASELINE_CONFIG SE_CONFIG [--seeds 0 1 2] [--work-dir DIR]
        [--paper KEY] [--cfg-options key=value ...]

Both configs get identical settings (the same seeds and --cfg-options); runs go one after
another, baseline and SE alternating per seed, each through tools/train.py and then
tools/test.py on its last checkpoint. A failed run is reported by the comparison.
"""
import argparse
import os.path as osp
import subprocess
import sys

TOOLS = osp.dirname(osp.abspath(__file__))


def run(cmd: list[str]) -> bool:
    print('\n$ ' + ' '.join(cmd), flush=True)
    return subprocess.run(cmd).returncode == 0


def train_and_test(config: str, work_dir: str, seed: int, options: list[str],
                   verbose: bool) -> bool:
    opts = ['--cfg-options', f'randomness.seed={seed}', *options]
    if verbose:
        opts.append('--verbose')
    if not run([sys.executable, osp.join(TOOLS, 'train.py'), config, '--work-dir', work_dir,
                *opts]):
        return False
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    return run([sys.executable, osp.join(TOOLS, 'test.py'), config, checkpoint,
                '--work-dir', work_dir, *opts])


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

    dirs = {'baseline': [], 'se': []}
    for seed in args.seeds:
        for name, config in (('baseline', args.baseline), ('se', args.se)):
            work_dir = osp.join(args.work_dir, name, f'seed{seed}')
            dirs[name].append(work_dir)
            if not train_and_test(config, work_dir, seed, args.cfg_options, args.verbose):
                print(f'!! {name} seed {seed} failed; the comparison will list it',
                      flush=True)
    compare_args = ['--se', *dirs['se'], '--baseline', *dirs['baseline'],
                    '--out-dir', osp.join(args.work_dir, 'compare')]
    if args.paper:
        compare_args += ['--paper', args.paper]
    sys.path.insert(0, TOOLS)
    from compare import main as compare_main
    return compare_main(compare_args)


if __name__ == '__main__':
    try:
        raise SystemExit(main())
    except Exception as error:
        from seplugin.cli.console import exit_on_error
        exit_on_error(error, verbose='--verbose' in sys.argv)
