"""SE vs. baseline Faster R-CNN on the generated mini COCO dataset: ``python tools/demo.py``.

Generates the dataset if it is missing, trains the baseline and the SE detector of
``configs/mini/`` with ``tools/train.py``, evaluates each trained checkpoint with
``tools/test.py`` (mmdet's CocoMetric on the val split), and prints their bbox AP side by side.
A few minutes per model on a 2-core CPU; a GPU is used when there is one.
"""
import argparse
import glob
import json
import os.path as osp
import subprocess
import sys
import time

TOOLS = osp.dirname(osp.abspath(__file__))
CONFIGS = osp.join(osp.dirname(TOOLS), 'configs', 'mini')
# (name in the table and work dir, config); the SE config differs only in the backbone.
MODELS = (
    ('baseline', osp.join(CONFIGS, 'faster_rcnn_r18_fpn_minicoco.py')),
    ('se', osp.join(CONFIGS, 'faster_rcnn_se_r18_fpn_minicoco.py')),
)
METRICS = ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75')
DEFAULT_DATA_ROOT = 'data/mini_coco'


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default='work_dirs/demo',
                        help='where both runs keep logs, checkpoints and metrics')
    parser.add_argument('--data-root', default=DEFAULT_DATA_ROOT,
                        help='mini COCO dataset root; generated when missing')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='passed to both trainings, e.g. train_cfg.max_iters=100')
    return parser.parse_args(argv)


def run(script: str, *args: str) -> None:
    """Run a tool of this folder with this Python; its log streams to the console."""
    command = [sys.executable, osp.join(TOOLS, script), *args]
    print('+ ' + ' '.join(command), flush=True)
    subprocess.run(command, check=True)


def read_test_metrics(test_dir: str) -> dict[str, float]:
    """The metrics tools/test.py wrote into ``test_dir`` (``<timestamp>/<timestamp>.json``),
    of its latest run."""
    files = sorted(glob.glob(osp.join(test_dir, '*', '*.json')))
    if not files:
        raise FileNotFoundError(f'no metrics file <timestamp>/<timestamp>.json in {test_dir}')
    with open(files[-1]) as f:
        metrics = json.load(f)
    return {name: metrics[f'coco/{name}'] for name in METRICS}


def train_and_test(name: str, config: str, work_dir: str,
                   cfg_options: list[str]) -> tuple[dict[str, float], float]:
    """Train one mini detector, evaluate its final checkpoint.

    Returns:
        tuple[dict[str, float], float]: The test metrics and the training time in seconds.
    """
    model_dir = osp.join(work_dir, name)
    options = ['--cfg-options', *cfg_options] if cfg_options else []
    start = time.perf_counter()
    run('train.py', config, '--work-dir', model_dir, *options)
    train_time = time.perf_counter() - start
    # The runner names its final checkpoint in this file.
    with open(osp.join(model_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    test_dir = osp.join(model_dir, 'test')
    run('test.py', config, checkpoint, '--work-dir', test_dir, *options)
    return read_test_metrics(test_dir), train_time


def format_table(results: dict[str, tuple[dict[str, float], float]]) -> str:
    """The AP table: one row per model, then SE minus baseline."""
    header = f'{"model":<28}{"AP":>8}{"AP50":>8}{"AP75":>8}{"train time":>13}'
    labels = dict(baseline='baseline (ResNet-18)', se='SE (SE-ResNet-18)')
    lines = [header, '-' * len(header)]
    for name, (metrics, seconds) in results.items():
        values = ''.join(f'{metrics[m]:>8.3f}' for m in METRICS)
        lines.append(f'{labels[name]:<28}{values}{seconds:>12.0f}s')
    diff = ''.join(f'{results["se"][0][m] - results["baseline"][0][m]:>+8.3f}'
                   for m in METRICS)
    lines.append(f'{"SE - baseline":<28}{diff}')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # Imported here so that --help answers at once (seplugin imports torch and mmdet).
    from seplugin.datasets.mini_coco import make_mini_coco, mini_coco_cfg_options

    if not all(osp.isfile(osp.join(args.data_root, 'annotations', f'instances_{split}.json'))
               for split in ('train', 'val')):
        print(f'Generating the mini COCO dataset in {args.data_root}', flush=True)
        make_mini_coco(args.data_root)
    cfg_options = list(args.cfg_options)
    if osp.normpath(args.data_root) != osp.normpath(DEFAULT_DATA_ROOT):
        cfg_options = [f'{key}={value}' for key, value in
                       mini_coco_cfg_options(args.data_root).items()] + cfg_options

    results = {name: train_and_test(name, config, args.work_dir, cfg_options)
               for name, config in MODELS}
    print('\nFaster R-CNN on mini COCO, bbox AP of mmdet\'s CocoMetric on the val split:')
    print(format_table(results))
    print('One run per model: on a task this small, runs with another seed can differ by '
          'about 0.1 AP;\nrepeat with --cfg-options randomness.seed=N before drawing '
          'conclusions.')
    print(f'\nLogs, checkpoints and metrics: {args.work_dir}')


if __name__ == '__main__':
    main()
