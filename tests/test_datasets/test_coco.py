"""CheckedCocoDataset: bad input stops at build time with the file or id in the message."""
import json
import os
import re

import pytest
from mmengine.registry import DefaultScope

from seplugin.datasets import CheckedCocoDataset
from seplugin.datasets.mini_coco import CLASSES, make_split


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('coco'))
    make_split(root, 'val', num_images=3, image_size=64)
    return root


def build(data_root, **kwargs):
    cfg = dict(data_root=data_root, ann_file='annotations/instances_val.json',
               data_prefix=dict(img='val/'), metainfo=dict(classes=CLASSES), pipeline=[])
    cfg.update(kwargs)
    return CheckedCocoDataset(**cfg)


def write_json(path, coco):
    with open(path, 'w') as f:
        json.dump(coco, f)
    return path


def load_json(data_root):
    with open(os.path.join(data_root, 'annotations', 'instances_val.json')) as f:
        return json.load(f)


def test_good_dataset_loads_like_coco_dataset(data_root):
    from mmdet.datasets import CocoDataset
    checked = build(data_root)
    plain = CocoDataset(data_root=data_root, ann_file='annotations/instances_val.json',
                        data_prefix=dict(img='val/'), metainfo=dict(classes=CLASSES),
                        pipeline=[])
    assert len(checked) == len(plain) == 3
    assert [checked.get_data_info(i) for i in range(3)] == \
        [plain.get_data_info(i) for i in range(3)]


def test_registered_in_mmdet_scope():
    from mmdet.registry import DATASETS
    with DefaultScope.overwrite_default_scope('mmdet'):
        assert DATASETS.get('CheckedCocoDataset') is CheckedCocoDataset


def test_missing_annotation_file(data_root):
    with pytest.raises(FileNotFoundError,
                       match=re.escape(os.path.join(data_root, 'annotations/missing.json'))):
        build(data_root, ann_file='annotations/missing.json')


def test_missing_image(data_root, tmp_path):
    coco = load_json(data_root)
    coco['images'][1]['file_name'] = 'gone.jpg'
    ann_file = write_json(tmp_path / 'ann.json', coco)
    with pytest.raises(FileNotFoundError) as error:
        build(data_root, ann_file=str(ann_file))
    message = str(error.value)
    assert os.path.join(data_root, 'val', 'gone.jpg') in message
    assert '1 of the 3 images' in message and str(ann_file) in message


def test_missing_images_can_be_left_to_the_pipeline(data_root, tmp_path):
    coco = load_json(data_root)
    coco['images'][1]['file_name'] = 'gone.jpg'
    ann_file = write_json(tmp_path / 'ann.json', coco)
    assert len(build(data_root, ann_file=str(ann_file), check_images=False)) == 3


def test_config_class_not_in_file(data_root):
    with pytest.raises(ValueError) as error:
        build(data_root, metainfo=dict(classes=('circle', 'hexagon')))
    message = str(error.value)
    assert "['hexagon']" in message and 'instances_val.json' in message


def test_coco_default_classes_on_a_custom_file(data_root):
    """The classic mistake: a custom dataset without metainfo gets COCO's 80 classes."""
    with pytest.raises(ValueError, match="'person'"):
        build(data_root, metainfo=None)


def test_file_category_not_in_config(data_root):
    with pytest.raises(ValueError) as error:
        build(data_root, metainfo=dict(classes=('circle', 'square')))
    message = str(error.value)
    assert "{3: 'triangle'}" in message and 'allow_unused_categories' in message


def test_subset_of_classes_when_allowed(data_root):
    dataset = build(data_root, metainfo=dict(classes=('circle', 'square')),
                    allow_unused_categories=True)
    labels = {i['bbox_label'] for d in range(len(dataset))
              for i in dataset.get_data_info(d)['instances']}
    assert labels <= {0, 1}


def test_annotation_with_unknown_category_id(data_root, tmp_path):
    coco = load_json(data_root)
    coco['annotations'][0]['category_id'] = 7
    ann_file = write_json(tmp_path / 'ann.json', coco)
    with pytest.raises(ValueError) as error:
        build(data_root, ann_file=str(ann_file))
    message = str(error.value)
    assert f'annotation id {coco["annotations"][0]["id"]}' in message
    assert 'category_id 7' in message and str(ann_file) in message
