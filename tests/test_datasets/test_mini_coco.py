"""The generated mini COCO dataset: deterministic, valid COCO, readable by mmdet."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
from mmdet.registry import DATASETS
from mmengine.config import Config
from mmengine.registry import DefaultScope
from PIL import Image
from pycocotools.coco import COCO

from seplugin.datasets.mini_coco import CLASSES, main, make_mini_coco, mini_coco_cfg_options

MINI_CONFIG = Path(__file__).parents[2] / 'configs/mini/faster_rcnn_r18_fpn_minicoco.py'
SMALL = dict(num_train=12, num_val=4, image_size=96)


@pytest.fixture(scope='module')
def mini_coco(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('mini_coco'))
    make_mini_coco(root, **SMALL)
    return root


def read_tree(root: str) -> dict[str, bytes]:
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, 'rb') as f:
                files[os.path.relpath(path, root)] = f.read()
    return files


def test_same_seed_gives_identical_files(mini_coco, tmp_path):
    make_mini_coco(str(tmp_path), **SMALL)
    first, second = read_tree(mini_coco), read_tree(str(tmp_path))
    assert len(first) == SMALL['num_train'] + SMALL['num_val'] + 2
    assert first == second


def test_other_seed_gives_other_images(mini_coco, tmp_path):
    make_mini_coco(str(tmp_path), **SMALL, seed=1)
    first, second = read_tree(mini_coco), read_tree(str(tmp_path))
    assert first.keys() == second.keys()
    assert first['train/000000.jpg'] != second['train/000000.jpg']


def test_images_do_not_depend_on_the_split_size(mini_coco, tmp_path):
    make_mini_coco(str(tmp_path), num_train=3, num_val=1, image_size=96)
    first, second = read_tree(mini_coco), read_tree(str(tmp_path))
    assert first['train/000002.jpg'] == second['train/000002.jpg']
    assert first['val/000000.jpg'] == second['val/000000.jpg']


@pytest.mark.parametrize('split', ['train', 'val'])
def test_annotations_are_valid_coco(mini_coco, split):
    ann_file = os.path.join(mini_coco, 'annotations', f'instances_{split}.json')
    coco = COCO(ann_file)
    num_images = SMALL[f'num_{split}']
    assert len(coco.getImgIds()) == num_images
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    anns = coco.dataset['annotations']
    assert len(anns) >= num_images  # at least one object per image
    assert len({a['id'] for a in anns}) == len(anns)
    for ann in anns:
        img = coco.imgs[ann['image_id']]
        x, y, w, h = ann['bbox']
        assert 0 <= x and 0 <= y and x + w <= img['width'] and y + h <= img['height'], ann
        assert w >= 1 and h >= 1 and 0 < ann['area'] <= w * h
        assert ann['category_id'] in coco.cats
        assert ann['iscrowd'] == 0
        polygon = np.array(ann['segmentation'][0]).reshape(-1, 2)
        assert np.allclose(polygon.min(0), [x, y], atol=0.02)
        assert np.allclose(polygon.max(0), [x + w, y + h], atol=0.02)
    for img in coco.dataset['images']:
        with Image.open(os.path.join(mini_coco, split, img['file_name'])) as image:
            assert image.size == (img['width'], img['height']) == (96, 96)
            assert image.mode == 'RGB'


def test_every_class_occurs(mini_coco):
    with open(os.path.join(mini_coco, 'annotations', 'instances_train.json')) as f:
        anns = json.load(f)['annotations']
    assert {a['category_id'] for a in anns} == {1, 2, 3}


def test_cli_writes_the_dataset(tmp_path, capsys):
    main(['--out', str(tmp_path), '--num-train', '2', '--num-val', '1', '--image-size', '64'])
    assert sorted(os.listdir(tmp_path / 'annotations')) == ['instances_train.json',
                                                           'instances_val.json']
    assert len(os.listdir(tmp_path / 'train')) == 2
    assert 'instances_val.json' in capsys.readouterr().out


def test_too_small_images_are_refused(tmp_path):
    with pytest.raises(ValueError, match='image_size'):
        make_mini_coco(str(tmp_path), image_size=16)


def test_mmdet_reads_it_through_the_mini_config(mini_coco):
    """The mini configs' datasets, pointed at this root, give every annotation back."""
    cfg = Config.fromfile(str(MINI_CONFIG))
    cfg.merge_from_dict(mini_coco_cfg_options(mini_coco))
    with DefaultScope.overwrite_default_scope('mmdet'):
        dataset = DATASETS.build(cfg.train_dataloader.dataset)
    coco = COCO(os.path.join(mini_coco, 'annotations', 'instances_train.json'))
    assert len(dataset) == SMALL['num_train']
    assert sum(len(dataset.get_data_info(i)['instances']) for i in range(len(dataset))) \
        == len(coco.dataset['annotations'])
    sample = dataset[0]
    assert sample['inputs'].shape[1:] == (128, 128)  # resized to the config's image size
    assert cfg.val_evaluator.ann_file.startswith(mini_coco)
