"""SE vs. baseline Faster R-CNN on the bundled mini data, the paper's protocol in miniature.

    python tools/demo.py [--seeds 0 1 2] [--work-dir work_dirs/demo]

1. Pretraining: the narrow ResNet-18 and SE-ResNet-18 are trained with one recipe on the
   generated mini ImageNet (``configs/mini/{,se}resnet18_mini_imagenet.py``) and tested.
2. Detection: each Faster R-CNN (``configs/mini/faster_rcnn_{,se_}r18_fpn_minicoco_pretrained.py``)
   starts from its backbone's checkpoint of step 1 through
   ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')``, the path the
   COCO configs take to MMPretrain's ImageNet weights, is trained on the generated mini COCO
   and tested (mmdet's CocoMetric on the val split).
3. The comparison of exactly the detectors trained here (bbox AP per model, the difference,
   the verdict, and each backbone's pretraining top-1), written with plots to
   ``<work dir>/compare``; failed runs are listed under it.

The data sets are generated when missing. The terminal shows one progress line per run
(stage, model, seed, iteration, ETA, loss) and the final table; the full output of every
run goes to ``<work dir>/logs/``. About 7 minutes for the default single seed on an idle
2-core CPU (measured 6:52 from a fresh clone; twice that when other work shares the
machine); a GPU is used when there is one. The orchestration is seplugin.engine.demo.
"""
import argparse
import os.path as osp

TOOLS = osp.dirname(osp.abspath(__file__))
CONFIGS = osp.join(osp.dirname(TOOLS), 'configs', 'mini')
PRETRAIN = {'baseline': osp.join(CONFIGS, 'resnet18_mini_imagenet.py'),
            'se': osp.join(CONFIGS, 'seresnet18_mini_imagenet.py')}
DETECT = {'baseline': osp.join(CONFIGS, 'faster_rcnn_r18_fpn_minicoco_pretrained.py'),
          'se': osp.join(CONFIGS, 'faster_rcnn_se_r18_fpn_minicoco_pretrained.py')}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default='work_dirs/demo',
                        help='where the runs keep logs, checkpoints and metrics')
    parser.add_argument('--data-root', default='data/mini_coco',
                        help='mini COCO dataset root; generated when missing')
    parser.add_argument('--cls-data-root', default='data/mini_imagenet',
                        help='mini ImageNet root for the pretraining; generated when missing')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0],
                        help='one pretraining and one detector per model and seed')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='passed to both detector trainings, e.g. train_cfg.max_iters=100')
    parser.add_argument('--pretrain-cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='passed to both pretrainings, e.g. train_cfg.max_epochs=2')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from seplugin.cli.console import hide_setuptools_notice
    from seplugin.engine.demo import run_demo
    hide_setuptools_notice()  # the runs' own logs keep every warning
    return run_demo(PRETRAIN, DETECT, args.seeds, args.work_dir, TOOLS, args.data_root,
                    args.cls_data_root, args.cfg_options, args.pretrain_cfg_options)


if __name__ == '__main__':
    raise SystemExit(main())
