"""The generated mini classification datasets: deterministic, and read by the datasets of
the mini configs (mmpretrain's ImageNet, seplugin's Places365)."""
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from mmpretrain.datasets import ImageNet

from seplugin.datasets import Places365
from seplugin.datasets.mini_cls import (
    IMAGENET_WNIDS,
    NUM_MINI_CLASSES,
    PLACES365_LABELS,
    draw_image,
    main,
    make_mini_imagenet,
    make_mini_places365,
)

SMALL = dict(train_per_class=2, val_per_class=1, size=24)


def read_tree(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes()
            for path in sorted(root.rglob('*')) if path.is_file()}


@pytest.fixture(scope='module')
def mini_imagenet(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('mini_imagenet')
    make_mini_imagenet(str(root), **SMALL)
    return root


@pytest.fixture(scope='module')
def mini_places365(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('mini_places365')
    make_mini_places365(str(root), test_images=3, **SMALL)
    return root


@pytest.mark.parametrize('make, fixture', [(make_mini_imagenet, 'mini_imagenet'),
                                           (make_mini_places365, 'mini_places365')])
def test_same_seed_gives_identical_bytes(make, fixture, tmp_path, request):
    first = read_tree(request.getfixturevalue(fixture))
    kwargs = dict(SMALL, test_images=3) if make is make_mini_places365 else SMALL
    make(str(tmp_path / 'again'), **kwargs)
    assert read_tree(tmp_path / 'again') == first
    make(str(tmp_path / 'other_seed'), seed=7, **kwargs)
    other = read_tree(tmp_path / 'other_seed')
    assert other.keys() == first.keys()
    images = [name for name in first if name.lower().endswith(('.jpeg', '.jpg'))]
    assert all(other[name] != first[name] for name in images)


def test_mini_imagenet_is_read_by_mmpretrain_imagenet(mini_imagenet):
    train = ImageNet(str(mini_imagenet), split='train')
    val = ImageNet(str(mini_imagenet), split='val')
    assert len(train) == 2 * NUM_MINI_CLASSES and len(val) == NUM_MINI_CLASSES
    assert sorted(set(train.get_gt_labels())) == list(range(NUM_MINI_CLASSES))
    first = train.get_data_info(0)
    assert first['img_path'] == os.path.join(str(mini_imagenet), 'train', IMAGENET_WNIDS[0],
                                             f'{IMAGENET_WNIDS[0]}_0001.JPEG')
    # The class folders alone (no meta/ lists) give the same samples.
    folders = ImageNet(str(mini_imagenet), data_prefix='train', ann_file='',
                       classes=[f'class {i}' for i in range(NUM_MINI_CLASSES)])
    assert sorted((d['img_path'], d['gt_label']) for d in folders.load_data_list()) == \
        sorted((d['img_path'], d['gt_label']) for d in train.load_data_list())


def test_mini_places365_is_read_by_places365(mini_places365):
    assert hashlib.md5((mini_places365 / 'categories_places365.txt').read_bytes()).hexdigest() \
        == '06c963b85866bd0649f97cb43dd16673'  # the official file
    train = Places365(str(mini_places365), split='train-standard', check_images=True)
    val = Places365(str(mini_places365), split='val', check_images=True)
    test = Places365(str(mini_places365), split='test', check_images=True)
    assert (len(train), len(val), len(test)) == (2 * NUM_MINI_CLASSES, NUM_MINI_CLASSES, 3)
    assert sorted(set(train.get_gt_labels())) == list(PLACES365_LABELS)
    assert sorted(val.get_gt_labels()) == list(PLACES365_LABELS)
    assert train.get_data_info(0)['img_path'] == os.path.join(
        str(mini_places365), 'data_256', 'a', 'apartment_building', 'outdoor', '00000001.jpg')


def test_classes_differ_in_pattern_and_colour():
    rng = np.random.default_rng(0)
    images = [draw_image(cls, rng, size=32) for cls in range(NUM_MINI_CLASSES)]
    assert all(img.shape == (32, 32, 3) and img.dtype == np.uint8 for img in images)
    # Horizontal stripes change from row to row and not along a row; vertical ones the
    # other way round.
    for img, rows_vary in ((images[0], True), (images[1], False)):
        across_rows = img.astype(float).mean(axis=1).std(axis=0).mean()
        across_columns = img.astype(float).mean(axis=0).std(axis=0).mean()
        assert (across_rows > 5 * across_columns) if rows_vary \
            else (across_columns > 5 * across_rows)
    # The same pattern in the two colour pairs, red on dark blue and yellow on purple: the
    # second is much greener on average.
    green = [np.mean([draw_image(cls, rng, size=32)[..., 1].mean() for _ in range(10)])
             for cls in range(NUM_MINI_CLASSES)]
    assert all(green[cls] + 40 < green[cls + 4] for cls in range(4))
    with pytest.raises(ValueError, match='outside 0..7'):
        draw_image(NUM_MINI_CLASSES, rng)


def test_non_empty_folder_is_refused_unless_overwrite(tmp_path):
    (tmp_path / 'keep.txt').write_text('mine')
    with pytest.raises(FileExistsError, match='not empty'):
        make_mini_imagenet(str(tmp_path), **SMALL)
    make_mini_imagenet(str(tmp_path), overwrite=True, **SMALL)
    assert (tmp_path / 'keep.txt').read_text() == 'mine'
    assert (tmp_path / 'meta' / 'train.txt').is_file()


def test_cli(tmp_path, capsys):
    main(['places365', '--out', str(tmp_path / 'p'), '--train-per-class', '1',
          '--val-per-class', '1', '--size', '16'])
    assert 'mini places365' in capsys.readouterr().out
    assert len((tmp_path / 'p' / 'places365_train_standard.txt').read_text().splitlines()) \
        == NUM_MINI_CLASSES
