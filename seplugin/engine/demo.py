"""The demo's orchestration (``tools/demo.py``): pretrain both backbones, start both
detectors from them, compare the detectors, on the bundled mini data.

Per seed, ``pretrain`` trains and tests the ResNet-18 and SE-ResNet-18 classifiers with one
recipe, then ``detect`` trains and tests each Faster R-CNN from its backbone's checkpoint of
the same seed (``--cfg-options model.backbone.init_cfg.checkpoint=...``, the path the COCO
configs take to MMPretrain's weights). Every run goes through
:func:`seplugin.engine.pairs.train_and_test`, so the comparison reads exactly the detectors
trained here and lists those that failed or whose pretraining failed.
"""
import os
import os.path as osp
import time

from seplugin.checkpoint import BACKBONE_CHECKPOINT_KEY
from seplugin.engine.pairs import Job, Record, compare_records, train_and_test

NAMES = {'baseline': 'ResNet-18', 'se': 'SE-ResNet-18'}
MODELS = ('baseline', 'se')
DEFAULT_DATA_ROOT = 'data/mini_coco'  # where the mini configs look
DEFAULT_CLS_DATA_ROOT = 'data/mini_imagenet'


def data_options(data_root: str, cls_data_root: str) -> tuple[list[str], list[str]]:
    """Generate the data sets if missing; the --cfg-options (pretraining, detection) that
    point the configs at them when they are not where the configs look."""
    from seplugin.datasets.mini_cls import make_mini_imagenet
    from seplugin.datasets.mini_coco import make_mini_coco, mini_coco_cfg_options
    if not all(osp.isfile(osp.join(data_root, 'annotations', f'instances_{split}.json'))
               for split in ('train', 'val')):
        print(f'Generating the mini COCO dataset in {data_root}', flush=True)
        make_mini_coco(data_root)
    if not osp.isfile(osp.join(cls_data_root, 'meta', 'val.txt')):
        print(f'Generating the mini ImageNet dataset in {cls_data_root}', flush=True)
        make_mini_imagenet(cls_data_root)
    det = [] if osp.normpath(data_root) == osp.normpath(DEFAULT_DATA_ROOT) else \
        [f'{key}={value}' for key, value in mini_coco_cfg_options(data_root).items()]
    cls = [] if osp.normpath(cls_data_root) == osp.normpath(DEFAULT_CLS_DATA_ROOT) else \
        [f'{loader}.dataset.data_root={cls_data_root}'
         for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    return cls, det


def stage_jobs(stage: str, configs: dict[str, str], seeds: list[int], work_dir: str,
               options: list[str]) -> list[Job]:
    """Both models per seed, each in ``<work_dir>/<stage>/<model>/seed<seed>``."""
    return [Job(model, configs[model], seed, osp.join(work_dir, stage, model, f'seed{seed}'),
                list(options), f'{stage:<8}  {NAMES[model]:<12}  seed {seed}')
            for seed in seeds for model in MODELS]


def _max_epochs(job: Job) -> int | None:
    """The epochs of an epoch-based training, for its progress line."""
    from mmengine.config import Config
    epochs = Config.fromfile(job.config).train_cfg.get('max_epochs')
    for option in job.options:
        if option.startswith('train_cfg.max_epochs='):
            epochs = int(option.split('=', 1)[1])
    return epochs


def run_step(job: Job, log: str, tools: str, max_epochs: int | None = None) -> Record:
    """One job with its output in ``log`` and one line on the terminal when it ends."""
    start = time.time()
    record = train_and_test(job, tools, log, max_epochs=max_epochs)
    minutes, seconds = divmod(int(time.time() - start), 60)
    status = f'done in {minutes}m{seconds:02d}s' if record.ok else \
        f'FAILED ({record.status}): see {log}'
    print(f'\r{job.label}  {status}'.ljust(150 if os.isatty(1) else 0), flush=True)
    return record


def run_demo(pretrain: dict[str, str], detect: dict[str, str], seeds: list[int],
             work_dir: str, tools: str, data_root: str = DEFAULT_DATA_ROOT,
             cls_data_root: str = DEFAULT_CLS_DATA_ROOT, cfg_options: list[str] = (),
             pretrain_cfg_options: list[str] = (), step=run_step) -> int:
    """Pretraining of both backbones per seed, then both detectors per seed from those
    checkpoints, then their comparison in ``<work_dir>/compare``. ``pretrain``/``detect``
    map 'baseline'/'se' to configs; ``step`` runs one job (a test replaces it)."""
    cls_options, det_options = data_options(data_root, cls_data_root)
    logs = osp.join(work_dir, 'logs')
    os.makedirs(logs, exist_ok=True)
    print(f'Full logs: {logs}/', flush=True)
    starts = {}
    for job in stage_jobs('pretrain', pretrain, seeds, work_dir,
                          [*cls_options, *pretrain_cfg_options]):
        record = step(job, osp.join(logs, f'pretrain_{job.name}_seed{job.seed}.log'), tools,
                      _max_epochs(job))
        starts[(job.name, job.seed)] = record.checkpoint if record.ok else None
    detectors = []
    for job in stage_jobs('detect', detect, seeds, work_dir, [*det_options, *cfg_options]):
        start = starts[(job.name, job.seed)]
        if start is None:
            print(f'{job.label}  skipped: its pretraining failed', flush=True)
            detectors.append(Record(job, status='not run: its pretraining failed'))
            continue
        job.options.append(f'{BACKBONE_CHECKPOINT_KEY}={start}')
        detectors.append(step(job, osp.join(logs, f'detect_{job.name}_seed{job.seed}.log'),
                              tools))
    print()
    status = compare_records(detectors, osp.join(work_dir, 'compare'), task='detection')
    if len(seeds) < 3:
        print('\nWith fewer than 3 seeds per model there is no verdict: on a task this small '
              'another seed can move AP by about 10 points. --seeds 0 1 2 gives mean ± std, '
              'intervals and the paired t-test.')
    print(f'\nLogs, checkpoints and metrics: {work_dir}')
    return status
