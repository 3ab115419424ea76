"""Places365: the official list formats, both resolutions, and errors naming file and line."""
import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pytest
from mmengine.registry import init_default_scope
from PIL import Image

from seplugin.datasets import PLACES365_CATEGORIES, Places365
from seplugin.datasets.places365 import places365_categories_text

# (path in the training list, label): a plain and a sub-category class
TRAIN = [('/a/airfield/00000001.jpg', 0), ('/a/airfield/00000002.jpg', 0),
         ('/a/apartment_building/outdoor/00000001.jpg', 8)]
CHALLENGE_EXTRA = [('/z/zen_garden/00005001.jpg', 364)]
VAL = [('Places365_val_00000001.jpg', 165), ('Places365_val_00000002.jpg', 8)]
TEST = ['Places365_test_00000001.jpg', 'Places365_test_00000002.jpg']


def write_image(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), 128, np.uint8)).save(path)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A Places365 root in the official layout with both resolutions' folders."""
    (tmp_path / 'categories_places365.txt').write_text(places365_categories_text())
    (tmp_path / 'places365_train_standard.txt').write_text(
        ''.join(f'{p} {label}\n' for p, label in TRAIN))
    (tmp_path / 'places365_train_challenge.txt').write_text(
        ''.join(f'{p} {label}\n' for p, label in TRAIN + CHALLENGE_EXTRA))
    (tmp_path / 'places365_val.txt').write_text(''.join(f'{p} {lab}\n' for p, lab in VAL))
    (tmp_path / 'places365_test.txt').write_text(''.join(f'{p}\n' for p in TEST))
    # The large images differ in size, to tell which folder an image came from.
    for resolution, size in (('256', 16), ('large', 24)):
        for path, _ in TRAIN + CHALLENGE_EXTRA:
            write_image(tmp_path / f'data_{resolution}' / path.lstrip('/'), size)
        for path, _ in VAL:
            write_image(tmp_path / f'val_{resolution}' / path, size)
        for path in TEST:
            write_image(tmp_path / f'test_{resolution}' / path, size)
    return tmp_path


def test_built_in_categories_are_the_official_file():
    assert len(PLACES365_CATEGORIES) == 365
    text = places365_categories_text()
    assert text.startswith('/a/airfield 0\n/a/airplane_cabin 1\n')
    assert hashlib.md5(text.encode()).hexdigest() == '06c963b85866bd0649f97cb43dd16673'


@pytest.mark.parametrize('split, entries', [
    ('train-standard', TRAIN),
    ('train-challenge', TRAIN + CHALLENGE_EXTRA),
    ('val', VAL),
])
@pytest.mark.parametrize('resolution, folder', [('256', '256'), ('large', 'large'),
                                                (256, '256')])
def test_labelled_splits(root, split, entries, resolution, folder):
    dataset = Places365(str(root), split=split, resolution=resolution)
    image_folder = ('val' if split == 'val' else 'data') + f'_{folder}'
    assert len(dataset) == len(entries)
    for i, (path, label) in enumerate(entries):
        info = dataset.get_data_info(i)
        assert info['img_path'] == os.path.join(str(root), image_folder, path.lstrip('/'))
        assert info['gt_label'] == label
        assert info['list_line'] == i + 1
    assert dataset.get_cat_ids(len(entries) - 1) == [entries[-1][1]]
    np.testing.assert_array_equal(dataset.get_gt_labels(), [label for _, label in entries])


def test_class_names_come_from_the_categories_file(root):
    dataset = Places365(str(root), split='val')
    classes = dataset.metainfo['classes']
    assert classes == PLACES365_CATEGORIES
    assert classes[0] == 'airfield'
    assert classes[8] == 'apartment_building/outdoor'
    assert classes[364] == 'zen_garden'
    # A categories file of the right format but other names wins over the built-in names.
    lines = places365_categories_text().split('\n')
    lines[0] = '/a/my_airfield 0'
    (root / 'categories_places365.txt').write_text('\n'.join(lines) + '\n')
    assert Places365(str(root), split='val').metainfo['classes'][0] == 'my_airfield'
    # None: the built-in names, no file needed
    (root / 'categories_places365.txt').unlink()
    assert Places365(str(root), split='val',
                     categories_file=None).metainfo['classes'] == PLACES365_CATEGORIES


def test_test_split_has_no_labels(root):
    for resolution in ('256', 'large'):
        dataset = Places365(str(root), split='test', resolution=resolution)
        assert len(dataset) == len(TEST)
        info = dataset.get_data_info(1)
        assert info['img_path'] == os.path.join(str(root), f'test_{resolution}', TEST[1])
        assert 'gt_label' not in info
        with pytest.raises(ValueError, match='test split of Places365 has no labels'):
            dataset.get_cat_ids(0)


def test_pipeline_loads_the_image_of_the_chosen_resolution(root):
    pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
    init_default_scope('mmpretrain')
    for resolution, size in (('256', 16), ('large', 24)):
        sample = Places365(str(root), split='val', resolution=resolution,
                           pipeline=pipeline, test_mode=True)[0]
        assert tuple(sample['inputs'].shape) == (3, size, size)
        assert sample['data_samples'].gt_label.tolist() == [165]
    test_sample = Places365(str(root), split='test', pipeline=pipeline, test_mode=True)[0]
    assert 'gt_label' not in test_sample['data_samples']


def test_built_from_the_mmpretrain_registry(root):
    from mmpretrain.registry import DATASETS
    init_default_scope('mmpretrain')
    dataset = DATASETS.build(dict(type='Places365', data_root=str(root), split='val'))
    assert type(dataset) is Places365 and len(dataset) == len(VAL)


def test_custom_list_and_image_folder(root):
    (root / 'my_list.txt').write_text('Places365_val_00000002.jpg 8\n')
    dataset = Places365(str(root), split='val', ann_file='my_list.txt',
                        data_prefix='val_large')
    assert dataset.get_data_info(0)['img_path'] == os.path.join(
        str(root), 'val_large', 'Places365_val_00000002.jpg')


def test_blank_lines_are_skipped_and_do_not_shift_line_numbers(root):
    (root / 'places365_val.txt').write_text(
        '\nPlaces365_val_00000001.jpg 165\n\n  \nPlaces365_val_00000002.jpg 8\r\n\n')
    dataset = Places365(str(root), split='val')
    assert [dataset.get_data_info(i)['list_line'] for i in range(2)] == [2, 5]
    assert dataset.get_data_info(1)['gt_label'] == 8


# (split, list file, bad line, expected message after "<file>, line 2: ")
V = 'Places365_val_00000002.jpg'
BAD_LINES = [
    ('val', 'places365_val.txt', f'{V} 365', 'label 365 is outside 0..364'),
    ('val', 'places365_val.txt', f'{V} -1', 'label -1 is outside 0..364'),
    ('val', 'places365_val.txt', f'{V} abc', "label 'abc' is not an integer"),
    ('val', 'places365_val.txt', f'{V} 1.5', "label '1.5' is not an integer"),
    ('val', 'places365_val.txt', f'{V} 8 extra',
     'expected "<image> <label>" for the val split, got 3 fields'),
    ('train-standard', 'places365_train_standard.txt', '/a/airfield/00000002.jpg',
     'expected "<image> <label>" for the train-standard split, got 1 field: '),
    ('train-challenge', 'places365_train_challenge.txt', '/a/airfield/00000002.jpg 0 0',
     'expected "<image> <label>" for the train-challenge split, got 3 fields'),
    ('test', 'places365_test.txt', 'Places365_test_00000002.jpg 3',
     'expected "<image>" \\(no label\\) for the test split, got 2 fields'),
]


@pytest.mark.parametrize('split, list_name, bad, message', BAD_LINES,
                         ids=[f'{b[0]}: {b[2]}' for b in BAD_LINES])
def test_bad_list_line_is_rejected_with_file_and_line(root, split, list_name, bad, message):
    lines = (root / list_name).read_text().splitlines()
    lines[1] = bad
    (root / list_name).write_text('\n'.join(lines) + '\n')
    with pytest.raises(ValueError, match=re.escape(f'{root / list_name}, line 2: ')
                       + message):
        Places365(str(root), split=split)


@pytest.mark.parametrize('resolution', ['256', 'large'])
def test_missing_image_is_reported_lazily_with_file_and_line(root, resolution):
    os.remove(root / f'data_{resolution}' / 'a/apartment_building/outdoor/00000001.jpg')
    dataset = Places365(str(root), split='train-standard', resolution=resolution)  # no error
    dataset[0]  # present images still load
    expected = (f'{root / "places365_train_standard.txt"}, line 3: image '
                f'{root / f"data_{resolution}" / "a/apartment_building/outdoor/00000001.jpg"} '
                'does not exist')
    with pytest.raises(FileNotFoundError, match=re.escape(expected)):
        dataset[2]


def test_missing_images_are_listed_up_front_with_check_images(root):
    os.remove(root / 'val_256' / 'Places365_val_00000002.jpg')
    with pytest.raises(FileNotFoundError) as error:
        Places365(str(root), split='val', check_images=True)
    message = str(error.value)
    assert message.startswith(f'1 of the 2 images of {root / "places365_val.txt"} do not exist')
    assert (f'{root / "places365_val.txt"}, line 2: image '
            f'{root / "val_256" / "Places365_val_00000002.jpg"} does not exist') in message
    # Present images pass the check
    assert len(Places365(str(root), split='train-standard', check_images=True)) == len(TRAIN)


def test_missing_list_file(root):
    os.remove(root / 'places365_train_challenge.txt')
    with pytest.raises(FileNotFoundError, match='places365_train_challenge.txt.* does not '
                                                'exist'):
        Places365(str(root), split='train-challenge')


def test_lazy_init_reads_nothing(root):
    os.remove(root / 'places365_val.txt')
    dataset = Places365(str(root), split='val', lazy_init=True)
    assert dataset.metainfo['classes'] == PLACES365_CATEGORIES


@pytest.mark.parametrize('change, message', [
    (lambda lines: lines[:-1], r'has 364 categories, not 365: no line for index \[364\]'),
    (lambda lines: lines[:3] + ['airport_terminal 2'] + lines[4:],
     r'line 4: expected "/<letter>/<name> <index>"'),
    (lambda lines: lines[:3] + ['/a/alcove 1'] + lines[4:],
     r"line 4: category index 1 is also that of 'airplane_cabin'"),
    (lambda lines: lines[:3] + ['/a/alcove x'] + lines[4:],
     r"line 4: category index 'x' is not an integer"),
    (lambda lines: lines + ['/z/zoo 365'], r'line 366: category index 365 is outside 0..364'),
])
def test_bad_categories_file(root, change, message):
    path = root / 'categories_places365.txt'
    path.write_text('\n'.join(change(path.read_text().split('\n'))))
    with pytest.raises(ValueError, match=re.escape(str(path)) + '.*' + message):
        Places365(str(root), split='val')


@pytest.mark.parametrize('kwargs, message', [
    (dict(split='train'), "unknown Places365 split 'train'"),
    (dict(resolution='512'), "unknown Places365 resolution '512'"),
])
def test_bad_arguments(root, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Places365(str(root), **kwargs)
