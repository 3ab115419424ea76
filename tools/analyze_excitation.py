"""Plot the SE gate activations per class of a trained classifier (the paper's Fig. 6).

    python tools/analyze_excitation.py CONFIG CHECKPOINT [--classes 0 1 2] [--num-images 50]
        [--layers layer1.2 layer4.0 ...] [--out-dir DIR]

Early layers tend to excite class-agnostically, late ones class-specifically. Writes
``excitation.png`` and ``excitation.pt`` (the mean gates) into ``--out-dir``.
"""
import argparse
import os
import os.path as osp
import sys

# Only the standard library up here: --help answers without loading torch or mmengine.


def default_layers(names: list[str]) -> list[str]:
    """The last SE layer of each stage, and every SE layer of the last stage."""
    stages = {}
    for name in names:
        stages.setdefault(name.split('.')[0], []).append(name)
    last = list(stages)[-1]
    picked = [layers[-1] for stage, layers in stages.items() if stage != last]
    return picked + stages[last]


def check_classifier(model, cfg, path: str) -> None:
    """The study needs a classifier (images with one class label each) whose backbone has
    SE layers; say so before a checkpoint or data set is read."""
    from mmpretrain.models import ImageClassifier
    if not isinstance(model, ImageClassifier):
        raise SystemExit(
            f'error: {path} is not a classification config: its model is a '
            f'{type(model).__name__} (default_scope {cfg.get("default_scope")!r}). '
            'analyze_excitation needs an mmpretrain ImageClassifier with an SE backbone '
            'and a test_dataloader with class labels, e.g. '
            'configs/imagenet/seresnet50_8xb32_in1k.py')
    se_layers = getattr(model.backbone, 'se_layers', None)
    if se_layers is None or not dict(se_layers()):
        raise SystemExit(f'error: the backbone of {path} ({type(model.backbone).__name__}) '
                         "has no SE layers to record; use seplugin's SEResNet or SEResNeXt")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--classes', type=int, nargs='+', help='class indices (default all)')
    parser.add_argument('--num-images', type=int, default=50, help='images per class')
    parser.add_argument('--layers', nargs='+', help="SE layers to plot, e.g. 'layer4.0' "
                                                    '(default: last of each stage + stage 4)')
    parser.add_argument('--out-dir', default='work_dirs/excitation')
    parser.add_argument('--cfg-options', nargs='+', metavar='KEY=VALUE',
                        help='override config settings, e.g. test_dataloader.batch_size=8')
    parser.add_argument('--verbose', action='store_true',
                        help='on an error, print its traceback')
    args = parser.parse_args(argv)
    from seplugin.cli.console import hide_setuptools_notice
    hide_setuptools_notice()

    import torch
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import Runner, load_checkpoint
    from mmengine.utils import ProgressBar

    from seplugin.analysis.excitation import ExcitationRecorder, plot_excitations
    from seplugin.cli.config import load_config

    cfg = load_config(args.config, args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model = MODELS.build(cfg.model)
    check_classifier(model, cfg, args.config)
    load_checkpoint(model, args.checkpoint, map_location='cpu', strict=True)
    model = model.to('cuda' if torch.cuda.is_available() else 'cpu').eval()
    loader = Runner.build_dataloader(cfg.test_dataloader)
    classes = loader.dataset.metainfo.get('classes') or []
    wanted = set(args.classes) if args.classes else set(range(len(classes)))
    if classes and not wanted <= set(range(len(classes))):
        raise ValueError(f'--classes {sorted(wanted - set(range(len(classes))))} not in the '
                         f'dataset, which has {len(classes)} classes')

    recorder = ExcitationRecorder(model.backbone)
    seen: dict[int, int] = {}
    progress = ProgressBar(len(loader))
    with recorder, torch.no_grad():
        for batch in loader:
            data = model.data_preprocessor(batch, False)
            labels = [int(s.gt_label) for s in data['data_samples']]
            keep = []
            for i, label in enumerate(labels):
                if label in wanted and seen.get(label, 0) < args.num_images:
                    keep.append(i)
                    seen[label] = seen.get(label, 0) + 1
            progress.update()
            if keep:
                model(data['inputs'][keep], mode='tensor')
                recorder.add(labels[i] for i in keep)
    means = recorder.means()
    if not means:
        raise ValueError(f'no images of classes {sorted(wanted)} in the test split')
    layers = [f'{n}.se_layer' if not n.endswith('se_layer') else n for n in args.layers] \
        if args.layers else default_layers(list(means))
    unknown = [n for n in layers if n not in means]
    if unknown:
        raise ValueError(f'unknown SE layers {unknown}; the model has {list(means)}')
    os.makedirs(args.out_dir, exist_ok=True)
    names = {i: classes[i] if i < len(classes) else str(i) for i in seen}
    plot_excitations({n: means[n] for n in layers}, names,
                     osp.join(args.out_dir, 'excitation.png'))
    torch.save(dict(means=means, images_per_class=seen), osp.join(args.out_dir, 'excitation.pt'))
    print(f'\nimages per class: {seen}\nwrote {args.out_dir}/excitation.png')


if __name__ == '__main__':
    try:
        main()
    except Exception as error:
        from seplugin.cli.console import exit_on_error
        exit_on_error(error, verbose='--verbose' in sys.argv)
