"""SE vs. baseline Faster R-CNN on the generated mini COCO dataset: ``python tools/demo.py``.

Generates the dataset if it is missing, then runs ``tools/run_pair.py`` on the baseline and
the SE config of ``configs/mini/`` (they differ only in the backbone): each is trained with
``tools/train.py``, its last checkpoint evaluated with ``tools/test.py`` (mmdet's CocoMetric
on the val split), and ``tools/compare.py`` prints their bbox AP side by side and writes a
table, a CSV and plots to ``<work dir>/compare``. A few minutes per model and seed on a
2-core CPU; a GPU is used when there is one.
"""
import argparse
import os.path as osp
import sys

TOOLS = osp.dirname(osp.abspath(__file__))
CONFIGS = osp.join(osp.dirname(TOOLS), 'configs', 'mini')
BASELINE = osp.join(CONFIGS, 'faster_rcnn_r18_fpn_minicoco.py')
SE = osp.join(CONFIGS, 'faster_rcnn_se_r18_fpn_minicoco.py')
DEFAULT_DATA_ROOT = 'data/mini_coco'  # where the mini configs look


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default='work_dirs/demo',
                        help='where the runs keep logs, checkpoints and metrics')
    parser.add_argument('--data-root', default=DEFAULT_DATA_ROOT,
                        help='mini COCO dataset root; generated when missing')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0],
                        help='one training per model and seed (default: one seed)')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='passed to both trainings, e.g. train_cfg.max_iters=100')
    return parser.parse_args(argv)


def run_pair_argv(args: argparse.Namespace, data_options: list[str]) -> list[str]:
    """The tools/run_pair.py arguments for the demo's two configs."""
    options = data_options + args.cfg_options
    return [BASELINE, SE, '--seeds', *map(str, args.seeds), '--work-dir', args.work_dir,
            *(['--cfg-options', *options] if options else [])]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Imported here so that --help answers at once (seplugin imports torch and mmdet).
    from seplugin.datasets.mini_coco import make_mini_coco, mini_coco_cfg_options

    if not all(osp.isfile(osp.join(args.data_root, 'annotations', f'instances_{split}.json'))
               for split in ('train', 'val')):
        print(f'Generating the mini COCO dataset in {args.data_root}', flush=True)
        make_mini_coco(args.data_root)
    data_options = [] if osp.normpath(args.data_root) == osp.normpath(DEFAULT_DATA_ROOT) \
        else [f'{key}={value}' for key, value in mini_coco_cfg_options(args.data_root).items()]

    sys.path.insert(0, TOOLS)
    from run_pair import main as run_pair
    status = run_pair(run_pair_argv(args, data_options))
    if len(args.seeds) < 2:
        print('\nOne run per model: on a task this small, another seed can move AP by about '
              '10 points.\nWith --seeds 0 1 2 the table gives mean ± std and says whether '
              'the difference exceeds the seed noise.')
    print(f'\nLogs, checkpoints and metrics: {args.work_dir}')
    return status


if __name__ == '__main__':
    raise SystemExit(main())
