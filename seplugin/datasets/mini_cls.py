"""Tiny classification datasets drawn by code, in ImageNet's and Places365's file layouts.

For smoke tests and demos of the classification configs on a CPU: a few hundred 40x40
JPEGs of 8 classes, each class a combination of a stripe/checker/ring pattern and a colour
pair (so neither colour nor pattern alone tells the classes apart), with random frequency,
phase, colour jitter and noise per image. A ResNet-18 of width 16 learns them in under half
a minute on two CPU cores.

Same arguments give identical bytes: every image has its own random generator seeded by
(seed, split, class, index), and the JPEG encoder gets fixed settings.

Usage::

    python -m seplugin.datasets.mini_cls imagenet --out data/mini_imagenet
    python -m seplugin.datasets.mini_cls places365 --out data/mini_places365
"""
import argparse
import os
import os.path as osp

import numpy as np
from PIL import Image

from seplugin.datasets.generate import prepare_out

# The classes: 4 patterns x 2 colour pairs (foreground, background), as RGB.
PATTERNS = ('horizontal_stripes', 'vertical_stripes', 'checkerboard', 'rings')
PALETTES = (((225, 70, 40), (35, 45, 100)),    # red on dark blue
            ((210, 225, 70), (95, 35, 115)))   # yellow on purple
NUM_MINI_CLASSES = len(PATTERNS) * len(PALETTES)

# The first 8 ImageNet-1k classes (labels 0..7 of mmpretrain's IMAGENET_CATEGORIES), so the
# mini set is a subset of the real label space and the 1000-class configs read it as is.
IMAGENET_WNIDS = ('n01440764', 'n01443537', 'n01484850', 'n01491361', 'n01494475',
                  'n01496331', 'n01498041', 'n01514668')
# Places365 labels that get images: spread over the alphabet, and three of them are
# sub-categories ('apartment_building/outdoor', 'arena/hockey', 'forest/broadleaf'), whose
# training images sit one folder deeper, as in the real data.
PLACES365_LABELS = (8, 15, 48, 97, 150, 243, 306, 359)

SPLIT_IDS = {'train': 0, 'val': 1, 'test': 2}  # part of each image's seed


def draw_image(cls: int, rng: np.random.Generator, size: int = 40) -> np.ndarray:
    """An RGB image of mini class ``cls`` (0..7).

    Args:
        cls (int): Mini class: pattern ``cls % 4``, colour pair ``cls // 4``.
        rng (np.random.Generator): Source of the per-image variation.
        size (int): Height and width in pixels. Defaults to 40.

    Returns:
        np.ndarray: ``(size, size, 3)`` uint8 array.
    """
    if not 0 <= cls < NUM_MINI_CLASSES:
        raise ValueError(f'mini class {cls} is outside 0..{NUM_MINI_CLASSES - 1}')
    pattern = PATTERNS[cls % len(PATTERNS)]
    fg, bg = (np.array(c, dtype=np.float64) for c in PALETTES[cls // len(PATTERNS)])
    y, x = np.mgrid[0:size, 0:size] / size
    freq = rng.uniform(2.5, 4.5)  # cycles per image: coarse enough to survive a crop
    phase = rng.uniform(0, 2 * np.pi)
    if pattern == 'horizontal_stripes':
        wave = np.sin(2 * np.pi * freq * y + phase)
    elif pattern == 'vertical_stripes':
        wave = np.sin(2 * np.pi * freq * x + phase)
    elif pattern == 'checkerboard':
        wave = np.sin(2 * np.pi * freq * x + phase) * np.sin(2 * np.pi * freq * y + phase)
    else:  # rings around a random centre
        cy, cx = rng.uniform(0.3, 0.7, size=2)
        wave = np.sin(2 * np.pi * freq * np.hypot(y - cy, x - cx) + phase)
    # A soft edge between foreground and background, rather than a hard threshold.
    mask = np.clip(0.5 + 2 * wave, 0, 1)[..., None]
    fg = fg + rng.uniform(-30, 30, size=3)
    bg = bg + rng.uniform(-30, 30, size=3)
    img = mask * fg + (1 - mask) * bg + rng.normal(0, 10, size=(size, size, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _image_rng(seed: int, split: str, cls: int, index: int) -> np.random.Generator:
    """One generator per image, so each image depends only on its own identity."""
    return np.random.default_rng([seed, SPLIT_IDS[split], cls, index])


def _save_jpeg(img: np.ndarray, path: str) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    # Fixed encoder settings (and no EXIF or timestamps) keep the bytes reproducible.
    Image.fromarray(img, mode='RGB').save(path, format='JPEG', quality=90, subsampling=0,
                                          optimize=False)


def _write_lines(path: str, lines: list[str]) -> None:
    with open(path, 'w', encoding='utf-8', newline='\n') as f:
        f.write(''.join(f'{line}\n' for line in lines))


def make_mini_imagenet(out: str,
                       train_per_class: int = 32,
                       val_per_class: int = 16,
                       size: int = 40,
                       seed: int = 0,
                       overwrite: bool = False) -> dict[str, int]:
    """Write a mini ImageNet in the layout mmpretrain's ``ImageNet`` dataset reads.

    ::

        out/train/n01440764/n01440764_0001.JPEG ...   # 8 class folders (first 8 wnids)
        out/val/n01440764/ILSVRC2012_val_00000001.JPEG ...
        out/meta/train.txt   # "n01440764/n01440764_0001.JPEG 0"
        out/meta/val.txt     # "n01440764/ILSVRC2012_val_00000001.JPEG 0"

    Labels are 0..7, the first 8 ImageNet-1k classes, so ``ImageNet(split='train')`` with
    its 1000 class names reads the ``meta`` lists unchanged. (Its folder scan, used when
    ``meta/`` is absent, needs ``classes`` set to these 8 classes.)

    Args:
        out (str): Output folder; new or empty unless ``overwrite``.
        train_per_class (int): Training images per class. Defaults to 32.
        val_per_class (int): Validation images per class. Defaults to 16.
        size (int): Image side in pixels. Defaults to 40.
        seed (int): Random seed. Defaults to 0.
        overwrite (bool): Write into a non-empty ``out``. Defaults to False.

    Returns:
        dict[str, int]: Number of images per split.
    """
    prepare_out(out, overwrite)
    os.makedirs(osp.join(out, 'meta'), exist_ok=True)
    counts = {}
    val_number = 0
    for split, per_class in (('train', train_per_class), ('val', val_per_class)):
        lines = []
        for cls, wnid in enumerate(IMAGENET_WNIDS):
            for i in range(per_class):
                if split == 'train':
                    name = f'{wnid}/{wnid}_{i + 1:04d}.JPEG'
                else:  # numbered across classes, as ImageNet's validation images are
                    val_number += 1
                    name = f'{wnid}/ILSVRC2012_val_{val_number:08d}.JPEG'
                img = draw_image(cls, _image_rng(seed, split, cls, i), size)
                _save_jpeg(img, osp.join(out, split, name))
                lines.append(f'{name} {cls}')
        _write_lines(osp.join(out, 'meta', f'{split}.txt'), lines)
        counts[split] = len(lines)
    return counts


def make_mini_places365(out: str,
                        train_per_class: int = 32,
                        val_per_class: int = 16,
                        test_images: int = 16,
                        size: int = 40,
                        seed: int = 1,
                        overwrite: bool = False) -> dict[str, int]:
    """Write a mini Places365 in the official file-list layout (256 folders).

    The categories file is the official one, all 365 classes, so the dataset and the
    365-class configs read it unchanged; images exist for 8 of the labels
    (``PLACES365_LABELS``). Chance accuracy is therefore 1/8 for a classifier that has
    learnt which labels occur. The images are ``size`` pixels, not 256, in the folders
    named ``*_256`` that the dataset reads by default::

        out/categories_places365.txt       # "/a/airfield 0" ... (365 lines)
        out/places365_train_standard.txt   # "/a/apartment_building/outdoor/00000001.jpg 8"
        out/places365_val.txt              # "Places365_val_00000001.jpg 243", mixed classes
        out/places365_test.txt             # "Places365_test_00000001.jpg", no labels
        out/data_256/a/apartment_building/outdoor/00000001.jpg ...
        out/val_256/Places365_val_00000001.jpg ...
        out/test_256/Places365_test_00000001.jpg ...

    Args:
        out (str): Output folder; new or empty unless ``overwrite``.
        train_per_class (int): Training images per class. Defaults to 32.
        val_per_class (int): Validation images per class. Defaults to 16.
        test_images (int): Unlabelled test images (classes in turn). Defaults to 16.
        size (int): Image side in pixels. Defaults to 40.
        seed (int): Random seed. Defaults to 1 (other images than the mini ImageNet's).
        overwrite (bool): Write into a non-empty ``out``. Defaults to False.

    Returns:
        dict[str, int]: Number of images per split.
    """
    # here, not at the top: the Places365 dataset needs MMPretrain, mini ImageNet does not
    from seplugin.datasets.places365 import PLACES365_CATEGORIES, places365_categories_text
    prepare_out(out, overwrite)
    with open(osp.join(out, 'categories_places365.txt'), 'w', encoding='utf-8',
              newline='\n') as f:
        f.write(places365_categories_text())  # byte for byte the official file

    train_lines = []
    for cls, label in enumerate(PLACES365_LABELS):
        name = PLACES365_CATEGORIES[label]
        for i in range(train_per_class):
            rel = f'/{name[0]}/{name}/{i + 1:08d}.jpg'
            img = draw_image(cls, _image_rng(seed, 'train', cls, i), size)
            _save_jpeg(img, osp.join(out, 'data_256', rel.lstrip('/')))
            train_lines.append(f'{rel} {label}')
    _write_lines(osp.join(out, 'places365_train_standard.txt'), train_lines)

    # The official validation list mixes the classes; a seeded shuffle does the same.
    val_items = [(cls, i) for cls in range(len(PLACES365_LABELS))
                 for i in range(val_per_class)]
    order = np.random.default_rng([seed, SPLIT_IDS['val']]).permutation(len(val_items))
    val_lines = []
    for number, k in enumerate(order, start=1):
        cls, i = val_items[k]
        name = f'Places365_val_{number:08d}.jpg'
        _save_jpeg(draw_image(cls, _image_rng(seed, 'val', cls, i), size),
                   osp.join(out, 'val_256', name))
        val_lines.append(f'{name} {PLACES365_LABELS[cls]}')
    _write_lines(osp.join(out, 'places365_val.txt'), val_lines)

    test_lines = []
    for number in range(1, test_images + 1):
        cls = (number - 1) % len(PLACES365_LABELS)
        name = f'Places365_test_{number:08d}.jpg'
        _save_jpeg(draw_image(cls, _image_rng(seed, 'test', cls, number), size),
                   osp.join(out, 'test_256', name))
        test_lines.append(name)
    _write_lines(osp.join(out, 'places365_test.txt'), test_lines)
    return dict(train=len(train_lines), val=len(val_lines), test=len(test_lines))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('dataset', choices=['imagenet', 'places365'], help='which layout')
    parser.add_argument('--out', required=True, help='output folder, e.g. data/mini_imagenet')
    parser.add_argument('--seed', type=int, help='random seed (default: 0 for imagenet, '
                                                 '1 for places365)')
    parser.add_argument('--train-per-class', type=int, default=32)
    parser.add_argument('--val-per-class', type=int, default=16)
    parser.add_argument('--size', type=int, default=40, help='image side in pixels')
    parser.add_argument('--overwrite', action='store_true',
                        help='write into a non-empty folder (rewrites the generated files)')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    kwargs = dict(train_per_class=args.train_per_class, val_per_class=args.val_per_class,
                  size=args.size, overwrite=args.overwrite)
    if args.seed is not None:
        kwargs['seed'] = args.seed
    make = make_mini_imagenet if args.dataset == 'imagenet' else make_mini_places365
    try:
        counts = make(args.out, **kwargs)
    except FileExistsError as e:
        raise SystemExit(f'error: {e}') from None
    print(f'mini {args.dataset} in {args.out}: ' +
          ', '.join(f'{n} {split}' for split, n in counts.items()) + ' images')


if __name__ == '__main__':
    main()
