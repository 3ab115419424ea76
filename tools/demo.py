"""SE vs. baseline Faster R-CNN on the bundled mini data, the paper's protocol in miniature.

    python tools/demo.py [--seeds 0 1 2] [--work-dir work_dirs/demo]

1. Pretraining: the narrow ResNet-18 and SE-ResNet-18 are trained with one recipe on the
   generated mini ImageNet (``configs/mini/{,se}resnet18_mini_imagenet.py``) and tested.
2. Detection: each Faster R-CNN (``configs/mini/faster_rcnn_{,se_}r18_fpn_minicoco_pretrained.py``)
   starts from its backbone's checkpoint of step 1 through
   ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')``, the path the
   COCO configs take to MMPretrain's ImageNet weights, is trained on the generated mini COCO
   and tested (mmdet's CocoMetric on the val split).
3. ``tools/compare.py`` prints the table (bbox AP per model, the difference, the verdict,
   and each backbone's pretraining top-1) and writes it with plots to ``<work dir>/compare``.

The data sets are generated when missing. The terminal shows one progress line per run
(stage, model, seed, iteration, ETA, loss) and the final table; the full output of every
run goes to ``<work dir>/logs/``. About 11 minutes per seed on a 2-core CPU; a GPU is used
when there is one.
"""
import argparse
import os
import os.path as osp
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field

TOOLS = osp.dirname(osp.abspath(__file__))
CONFIGS = osp.join(osp.dirname(TOOLS), 'configs', 'mini')
PRETRAIN = {'baseline': osp.join(CONFIGS, 'resnet18_mini_imagenet.py'),
            'se': osp.join(CONFIGS, 'seresnet18_mini_imagenet.py')}
DETECT = {'baseline': osp.join(CONFIGS, 'faster_rcnn_r18_fpn_minicoco_pretrained.py'),
          'se': osp.join(CONFIGS, 'faster_rcnn_se_r18_fpn_minicoco_pretrained.py')}
NAMES = {'baseline': 'ResNet-18', 'se': 'SE-ResNet-18'}
DEFAULT_DATA_ROOT = 'data/mini_coco'  # where the mini configs look
DEFAULT_CLS_DATA_ROOT = 'data/mini_imagenet'
# Where the detection configs name their starting weights (as the COCO configs do).
CHECKPOINT_KEY = 'model.backbone.init_cfg.checkpoint'


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default='work_dirs/demo',
                        help='where the runs keep logs, checkpoints and metrics')
    parser.add_argument('--data-root', default=DEFAULT_DATA_ROOT,
                        help='mini COCO dataset root; generated when missing')
    parser.add_argument('--cls-data-root', default=DEFAULT_CLS_DATA_ROOT,
                        help='mini ImageNet root for the pretraining; generated when missing')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0],
                        help='one pretraining and one detector per model and seed')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='passed to both detector trainings, e.g. train_cfg.max_iters=100')
    parser.add_argument('--pretrain-cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='passed to both pretrainings, e.g. train_cfg.max_epochs=2')
    return parser.parse_args(argv)


@dataclass
class Step:
    """One training of one model and seed, followed by the test of its last checkpoint."""
    stage: str  # 'pretrain' or 'detect'
    model: str  # 'baseline' or 'se'
    seed: int
    config: str
    work_dir: str
    options: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f'{self.stage:<8}  {NAMES[self.model]:<12}  seed {self.seed}'


def plan(args: argparse.Namespace, cls_options: list[str],
         det_options: list[str]) -> list[Step]:
    """Pretraining of both backbones per seed, then both detectors per seed; the detectors'
    starting checkpoints are filled in by :func:`main` once the pretraining has written them."""
    steps = []
    stages = (('pretrain', PRETRAIN, cls_options + args.pretrain_cfg_options),
              ('detect', DETECT, det_options + args.cfg_options))
    for stage, configs, options in stages:
        for seed in args.seeds:
            for model in ('baseline', 'se'):
                steps.append(Step(stage, model, seed, configs[model],
                                  osp.join(args.work_dir, stage, model, f'seed{seed}'),
                                  [f'randomness.seed={seed}', *options]))
    return steps


PROGRESS = re.compile(r'(?:Iter|Epoch)\(train\)\s*(?:\[\s*(\d+)\])?\s*\[\s*(\d+)/\s*(\d+)\]'
                      r'.*?eta:\s*(\S+).*?\sloss:\s*([\d.]+)')
MAX_EPOCHS = re.compile(r'max_epochs=(\d+)')


def progress(line: str, max_epochs: int | None = None) -> str | None:
    """'iter 50/600  ETA 0:02:41  loss 1.2345' from an mmengine training log line."""
    found = PROGRESS.search(line)
    if not found:
        return None
    epoch, i, n, eta, loss = found.groups()
    where = f'iter {i}/{n}' if epoch is None else \
        f'epoch {epoch}/{max_epochs or "?"} iter {i}/{n}'
    return f'{where}  ETA {eta}  loss {float(loss):.4f}'


def run_logged(cmd: list[str], log: str, label: str, max_epochs: int | None = None) -> bool:
    """Run ``cmd`` with its output appended to ``log``; keep one terminal line up to date."""
    tty = sys.stdout.isatty()
    last = 'starting'
    with open(log, 'a') as out:
        out.write('$ ' + ' '.join(cmd) + '\n')
        out.flush()
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    with open(log) as reader:
        while True:
            finished = process.poll() is not None
            for line in reader.readlines():
                last = progress(line, max_epochs) or last
            if tty:
                print(f'\r{label}  {last}'[:150].ljust(150), end='', flush=True)
            if finished:
                break
            time.sleep(0.5)
    return process.returncode == 0


def train_and_test(step: Step, logs: str) -> str | None:
    """Train and test one step; its last checkpoint, or None when a run failed."""
    log = osp.join(logs, f'{step.stage}_{step.model}_seed{step.seed}.log')
    options = ['--cfg-options', *step.options]
    max_epochs = None
    if step.stage == 'pretrain':
        from mmengine.config import Config
        cfg = Config.fromfile(step.config)
        max_epochs = cfg.train_cfg.get('max_epochs')
        for option in step.options:
            if option.startswith('train_cfg.max_epochs='):
                max_epochs = int(option.split('=', 1)[1])
    start = time.time()
    ok = run_logged([sys.executable, osp.join(TOOLS, 'train.py'), step.config, '--work-dir',
                     step.work_dir, *options], log, step.label, max_epochs)
    checkpoint = None
    if ok:
        with open(osp.join(step.work_dir, 'last_checkpoint')) as f:
            checkpoint = f.read().strip()
        ok = run_logged([sys.executable, osp.join(TOOLS, 'test.py'), step.config, checkpoint,
                         '--work-dir', step.work_dir, *options], log, step.label + '  test')
    minutes, seconds = divmod(int(time.time() - start), 60)
    status = f'done in {minutes}m{seconds:02d}s' if ok else f'FAILED: see {log}'
    print(f'\r{step.label}  {status}'.ljust(150 if sys.stdout.isatty() else 0), flush=True)
    return checkpoint if ok else None


def data_options(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """Generate the data sets if missing; the --cfg-options that point the configs at them
    when they are not where the configs look."""
    from seplugin.datasets.mini_cls import make_mini_imagenet
    from seplugin.datasets.mini_coco import make_mini_coco, mini_coco_cfg_options
    if not all(osp.isfile(osp.join(args.data_root, 'annotations', f'instances_{split}.json'))
               for split in ('train', 'val')):
        print(f'Generating the mini COCO dataset in {args.data_root}', flush=True)
        make_mini_coco(args.data_root)
    if not osp.isfile(osp.join(args.cls_data_root, 'meta', 'val.txt')):
        print(f'Generating the mini ImageNet dataset in {args.cls_data_root}', flush=True)
        make_mini_imagenet(args.cls_data_root)
    det = [] if osp.normpath(args.data_root) == osp.normpath(DEFAULT_DATA_ROOT) else \
        [f'{key}={value}' for key, value in mini_coco_cfg_options(args.data_root).items()]
    cls = [] if osp.normpath(args.cls_data_root) == osp.normpath(DEFAULT_CLS_DATA_ROOT) else \
        [f'{loader}.dataset.data_root={args.cls_data_root}'
         for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    return cls, det


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from seplugin.cli.console import hide_setuptools_notice
    hide_setuptools_notice()  # the runs' own logs keep every warning
    cls_options, det_options = data_options(args)
    logs = osp.join(args.work_dir, 'logs')
    os.makedirs(logs, exist_ok=True)
    print(f'Full logs: {logs}/', flush=True)
    checkpoints = {}
    dirs = {'baseline': [], 'se': []}
    for step in plan(args, cls_options, det_options):
        if step.stage == 'detect':
            start = checkpoints.get((step.model, step.seed))
            if start is None:
                print(f'{step.label}  skipped: its pretraining failed', flush=True)
                continue
            step.options.append(f'{CHECKPOINT_KEY}={start}')
            dirs[step.model].append(step.work_dir)
        checkpoint = train_and_test(step, logs)
        if step.stage == 'pretrain':
            checkpoints[(step.model, step.seed)] = checkpoint
    if not dirs['se'] or not dirs['baseline']:
        print('No detector to compare: see the logs.')
        return 1
    sys.path.insert(0, TOOLS)
    from compare import main as compare_main
    print()
    status = compare_main(['--se', *dirs['se'], '--baseline', *dirs['baseline'],
                           '--task', 'detection', '--out-dir',
                           osp.join(args.work_dir, 'compare')])
    if len(args.seeds) < 3:
        print('\nWith fewer than 3 seeds per model there is no verdict: on a task this small '
              'another seed can move AP by about 10 points. --seeds 0 1 2 gives mean ± std, '
              "intervals and Welch's test.")
    print(f'\nLogs, checkpoints and metrics: {args.work_dir}')
    return status


if __name__ == '__main__':
    raise SystemExit(main())
