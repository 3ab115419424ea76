"""A tiny, generated COCO-format detection dataset: ``python -m seplugin.datasets.mini_coco``.

Every image is drawn here with numpy and PIL: a few coloured circles, squares and triangles
of varied size, position, colour and rotation on a textured, noisy background, several per
image, some overlapping. Nothing is downloaded, and the same arguments give byte-identical
files, so a detector can be trained and evaluated end to end on a CPU in minutes.

Layout under ``root`` (the one of COCO 2017, with shorter split names)::

    annotations/instances_train.json
    annotations/instances_val.json
    train/000000.jpg ...
    val/000000.jpg ...

Boxes and polygons are amodal: an object keeps its full box and outline when a later one
partly covers it (placement keeps such overlaps small).
"""
import argparse
import json
import math
import os
import os.path as osp

import numpy as np
from PIL import Image, ImageDraw

from seplugin.datasets.generate import prepare_out

CLASSES = ('circle', 'square', 'triangle')
SPLITS = ('train', 'val')

# Object size (diameter of the circle through its corners) as a fraction of the image side.
MIN_SIZE, MAX_SIZE = 0.18, 0.45
MAX_OBJECTS = 4
# Largest overlap of two objects' boxes, as a fraction of the smaller box: some overlap, but
# no object hidden behind a later, larger one.
MAX_OVERLAP = 0.3
# Smallest mean absolute RGB difference between an object and the background colour.
MIN_CONTRAST = 60
JPEG_QUALITY = 90


def _box_overlap(a: tuple, b: tuple) -> float:
    """Intersection of two (x1, y1, x2, y2) boxes over the area of the smaller one."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    area = lambda box: (box[2] - box[0]) * (box[3] - box[1])
    return w * h / min(area(a), area(b))


def _polygon_area(points: np.ndarray) -> float:
    """Area of a simple polygon given as an (N, 2) array (shoelace formula)."""
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def _outline(category: str, cx: float, cy: float, size: float, angle: float) -> np.ndarray:
    """Vertices (N, 2) of a shape whose bounding circle has diameter ``size``.

    Circles are polygons of 32 vertices, as COCO stores them; squares and triangles are
    regular polygons rotated by ``angle`` radians.
    """
    corners = {'circle': 32, 'square': 4, 'triangle': 3}[category]
    if category == 'circle':
        angle = 0.0
    elif category == 'square':
        angle += math.pi / 4  # angle 0 is an axis-aligned square
    else:
        angle -= math.pi / 2  # angle 0 is a triangle standing on its base
    theta = angle + np.arange(corners) * 2 * math.pi / corners
    return np.stack([cx + size / 2 * np.cos(theta), cy + size / 2 * np.sin(theta)], axis=1)


def _background(rng: np.random.Generator, image_size: int) -> np.ndarray:
    """A smooth random colour field with texture: an (H, W, 3) float array in [0, 255]."""
    coarse = rng.uniform(40, 215, size=(4, 4, 3)).astype(np.uint8)
    smooth = Image.fromarray(coarse).resize((image_size, image_size), Image.BILINEAR)
    texture = Image.fromarray(rng.integers(0, 256, (image_size // 8,) * 2, dtype=np.uint8))
    texture = texture.resize((image_size, image_size), Image.BICUBIC)
    return (np.asarray(smooth, np.float32)
            + (np.asarray(texture, np.float32)[..., None] - 128) * 0.25)


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> tuple:
    """A random RGB colour that stands out from the ``background`` colour."""
    while True:
        colour = rng.integers(0, 256, 3)
        if np.abs(colour - background).mean() >= MIN_CONTRAST:
            return tuple(int(c) for c in colour)


def _draw_image(rng: np.random.Generator, image_size: int) -> tuple[Image.Image, list]:
    """Draw one image; returns it and its objects as (category, (N, 2) vertices)."""
    canvas = _background(rng, image_size)
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    objects, boxes = [], []
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        category = CLASSES[int(rng.integers(len(CLASSES)))]
        size = rng.uniform(MIN_SIZE, MAX_SIZE) * image_size
        angle = rng.uniform(-math.pi / 6, math.pi / 6)
        # A few tries to place it without hiding an earlier object; else leave it out.
        for _ in range(10):
            cx, cy = rng.uniform(size / 2 + 1, image_size - size / 2 - 1, 2)
            points = _outline(category, cx, cy, size, angle)
            box = (*points.min(0), *points.max(0))
            if all(_box_overlap(box, other) <= MAX_OVERLAP for other in boxes):
                break
        else:
            continue
        x1, y1, x2, y2 = (int(v) for v in box)
        colour = _contrasting_colour(rng, canvas[y1:y2 + 1, x1:x2 + 1].mean((0, 1)))
        draw.polygon([tuple(p) for p in points.tolist()], fill=colour)
        objects.append((category, points))
        boxes.append(box)
    # Sensor-like noise over everything, so that flat colours are not a give-away.
    noisy = np.asarray(image, np.float32) + rng.normal(0, 8, (image_size, image_size, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)), objects


def _split_seed(seed: int, split: str, index: int) -> list[int]:
    """Each image has its own random stream: image i of a split does not depend on how
    many images are generated."""
    return [seed, SPLITS.index(split), index]


def make_split(root: str, split: str, num_images: int, image_size: int = 128,
               seed: int = 0) -> str:
    """Draw one split and write its images and COCO annotation file.

    Args:
        root (str): Dataset root directory.
        split (str): ``'train'`` or ``'val'``.
        num_images (int): Number of images.
        image_size (int): Side of the square images in pixels. Defaults to 128.
        seed (int): Random seed. Defaults to 0.

    Returns:
        str: Path of the annotation file written.
    """
    if split not in SPLITS:
        raise ValueError(f'unknown split {split!r}; expected one of {SPLITS}')
    os.makedirs(osp.join(root, split), exist_ok=True)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    images, annotations = [], []
    for index in range(num_images):
        rng = np.random.default_rng(_split_seed(seed, split, index))
        image, objects = _draw_image(rng, image_size)
        file_name = f'{index:06d}.jpg'
        image.save(osp.join(root, split, file_name), quality=JPEG_QUALITY)
        images.append(dict(id=index + 1, file_name=file_name, width=image_size,
                           height=image_size))
        for category, points in objects:
            x1, y1 = points.min(0)
            x2, y2 = points.max(0)
            annotations.append(dict(
                id=len(annotations) + 1,
                image_id=index + 1,
                category_id=CLASSES.index(category) + 1,
                bbox=[round(float(v), 2) for v in (x1, y1, x2 - x1, y2 - y1)],
                area=round(_polygon_area(points), 2),
                iscrowd=0,
                segmentation=[[round(float(v), 2) for v in points.reshape(-1)]]))
    coco = dict(
        info=dict(description=f'seplugin mini COCO, {split} split', version='1.0'),
        licenses=[],
        images=images,
        annotations=annotations,
        categories=[dict(id=i + 1, name=name, supercategory='shape')
                    for i, name in enumerate(CLASSES)])
    ann_file = osp.join(root, 'annotations', f'instances_{split}.json')
    with open(ann_file, 'w') as f:
        json.dump(coco, f)
    return ann_file


def make_mini_coco(root: str, num_train: int = 500, num_val: int = 100,
                   image_size: int = 128, seed: int = 0,
                   overwrite: bool = False) -> dict[str, str]:
    """Generate the mini COCO dataset (train and val splits) under ``root``.

    Args:
        root (str): Dataset root directory; new or empty unless ``overwrite``.
        num_train (int): Number of training images. Defaults to 500.
        num_val (int): Number of validation images. Defaults to 100.
        image_size (int): Side of the square images in pixels. Defaults to 128.
        seed (int): Random seed; the same seed gives byte-identical files. Defaults to 0.
        overwrite (bool): Write into a non-empty ``root`` (the generated files are
            rewritten, others left alone). Defaults to False.

    Returns:
        dict[str, str]: The annotation file of each split, e.g. ``{'train': ...}``.

    Example:
        >>> files = make_mini_coco('data/mini_coco', num_train=8, num_val=4)
        >>> sorted(files)
        ['train', 'val']
    """
    if image_size < 32:
        raise ValueError(f'image_size must be at least 32, got {image_size}')
    prepare_out(root, overwrite)
    counts = dict(train=num_train, val=num_val)
    return {split: make_split(root, split, counts[split], image_size, seed)
            for split in SPLITS}


def mini_coco_cfg_options(root: str) -> dict[str, str]:
    """``--cfg-options`` that point the mini configs (``configs/mini/*minicoco.py``) at a
    mini COCO dataset under ``root`` instead of ``data/mini_coco/``.

    Args:
        root (str): Dataset root, as given to :func:`make_mini_coco`.

    Returns:
        dict[str, str]: Config keys and values, for ``Config.merge_from_dict`` or, as
        ``key=value``, for the ``--cfg-options`` of ``tools/train.py`` and ``tools/test.py``.
    """
    root = root.rstrip('/') + '/'
    options = {f'{loader}.dataset.data_root': root
               for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')}
    for evaluator in ('val_evaluator', 'test_evaluator'):
        options[f'{evaluator}.ann_file'] = osp.join(root, 'annotations', 'instances_val.json')
    return options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/mini_coco', help='dataset root to write')
    parser.add_argument('--num-train', type=int, default=500, help='training images')
    parser.add_argument('--num-val', type=int, default=100, help='validation images')
    parser.add_argument('--image-size', type=int, default=128, help='image side in pixels')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument('--overwrite', action='store_true',
                        help='write into a non-empty folder (rewrites the generated files)')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        files = make_mini_coco(args.out, args.num_train, args.num_val, args.image_size,
                               args.seed, overwrite=args.overwrite)
    except FileExistsError as e:
        raise SystemExit(f'error: {e}') from None
    for split, ann_file in files.items():
        print(f'{split}: {ann_file}')


if __name__ == '__main__':
    main()
