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


def test_config_classes_absent_from_the_file_warn(data_root):
    """The file's categories are a subset of the config's classes: CocoDataset loads it, and
    so does this class, with a warning naming the classes without annotations."""
    classes = ('circle', 'square', 'triangle', 'hexagon')
    with pytest.warns(UserWarning, match=r"1 classes of the config \(metainfo.classes\) are "
                                         r"not categories of '\S+instances_val.json', which "
                                         r"has none of their annotations: \['hexagon'\]$"):
        checked = build(data_root, metainfo=dict(classes=classes))
    assert_loads_like_coco_dataset(checked, data_root, classes)


def coco_subset_file(data_root, tmp_path):
    """The mini COCO file with three real COCO categories (their COCO ids) in place of its
    own: person 1, car 3, dog 18, listed in this order."""
    coco = load_json(data_root)
    rename = {1: ('person', 1), 2: ('car', 3), 3: ('dog', 18)}
    coco['categories'] = [dict(id=rename[c['id']][1], name=rename[c['id']][0])
                          for c in coco['categories']]
    for ann in coco['annotations']:
        ann['category_id'] = rename[ann['category_id']][1]
    return write_json(tmp_path / 'subset.json', coco), len(coco['annotations'])


def assert_loads_like_coco_dataset(checked, data_root, classes, **kwargs):
    from mmdet.datasets import CocoDataset
    plain = CocoDataset(data_root=data_root, data_prefix=dict(img='val/'), pipeline=[],
                        ann_file=checked.ann_file, metainfo=dict(classes=classes), **kwargs)
    assert len(checked) == len(plain) > 0
    assert [checked.get_data_info(i) for i in range(len(checked))] == \
        [plain.get_data_info(i) for i in range(len(plain))]


def test_subset_of_coco_categories_with_the_coco_classes(data_root, tmp_path):
    """4 classes' worth of a COCO file trained with the COCO config's 80 classes: every
    annotation is loaded, with CocoDataset's labels (the file's order, as CocoMetric maps
    them back to category ids), and the warning says so."""
    from mmdet.datasets import CocoDataset
    classes = CocoDataset.METAINFO['classes']
    ann_file, count = coco_subset_file(data_root, tmp_path)
    with pytest.warns(UserWarning) as warned:
        checked = build(data_root, ann_file=str(ann_file), metainfo=dict(classes=classes))
    [message] = [str(w.message) for w in warned if 'classes of the config' in str(w.message)]
    absent = [c for c in classes if c not in ('person', 'car', 'dog')]
    assert message.startswith(f'77 classes of the config (metainfo.classes) are not '
                              f"categories of '{ann_file}', which has none of their "
                              f'annotations: {absent}; as in CocoDataset, the labels number '
                              "the file's categories in its order ['person', 'car', 'dog']")
    assert sum(len(checked.get_data_info(i)['instances']) for i in range(len(checked))) \
        == count
    assert_loads_like_coco_dataset(checked, data_root, classes)


def test_no_class_of_the_config_in_the_file(data_root):
    with pytest.raises(ValueError, match=r"none of the categories \['circle', 'square', "
                                         r"'triangle'\] of '\S+instances_val.json' is a class "
                                         r'of the config \(metainfo.classes: 2 classes, '
                                         r"'hexagon', 'star'\)"):
        build(data_root, metainfo=dict(classes=('hexagon', 'star')))


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
