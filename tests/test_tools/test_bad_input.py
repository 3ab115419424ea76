"""Bad input to tools/train.py and tools/test.py: each gets an error naming the bad value.

Configs (unknown types, wrong depth, widths that do not agree, missing keys), checkpoints
(wrong class count, foreign keys, weights-only files for --resume, missing files) and data
(empty datasets, unreadable images, labels out of range, class lists that do not match).
The tools run in this process (their ``main()`` with ``sys.argv`` set), which is what a
subprocess would run, minus the start-up time.
"""
import json
import re
import uuid
from pathlib import Path

import pytest
import torch
import torchvision
from tool_runs import CLS, mini_options, save_mini_classifier, tool

from seplugin.datasets.mini_cls import make_mini_imagenet, make_mini_places365
from seplugin.datasets.mini_coco import make_mini_coco, mini_coco_cfg_options

REPO = Path(__file__).parents[2]
PLACES = REPO / 'configs/mini/seresnet18_mini_places365.py'
DET = REPO / 'configs/mini/faster_rcnn_se_r18_fpn_minicoco.py'


def options(data: Path, work_dir: Path, *extra: str) -> list[str]:
    """--work-dir and --cfg-options for a one-epoch run of the mini classifier on ``data``."""
    return ['--work-dir', work_dir, *mini_options(data, *extra)]


@pytest.fixture(scope='module')
def imagenet(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp('imagenet')
    make_mini_imagenet(str(data), train_per_class=1, val_per_class=1, size=32)
    return data


@pytest.fixture
def data_copy(imagenet, tmp_path) -> Path:
    import shutil
    return Path(shutil.copytree(imagenet, tmp_path / 'data'))


@pytest.fixture(scope='module')
def weights(tmp_path_factory) -> dict:
    """Checkpoints: of the mini classifier's model itself, and of torchvision's ResNet-18."""
    folder = tmp_path_factory.mktemp('weights')
    own = save_mini_classifier(folder / 'own.pth')
    foreign = folder / 'torchvision.pth'
    torch.save(torchvision.models.resnet18().state_dict(), foreign)
    return dict(own=own, foreign=foreign)


# -- configs ------------------------------------------------------------------------------
@pytest.mark.parametrize('option, error, message', [
    ('model.backbone.type=SEResNetX', KeyError,
     r'SEResNetX is not in the mmpretrain::model registry'),
    ('model.backbone.depth=19', ValueError,
     r'invalid depth 19 for MMPretrainSEResNet; expected one of \[18, 34, 50, 101, 152\]'),
    ('model.backbone.se_ratio=0', ValueError, r'ratio must be a number > 0, got 0'),
    ('model.head.in_channels=64', RuntimeError,
     r'--> in model\.head\.fc \(Linear\(in_features=64, out_features=1000, bias=True\)\), '
     r'called with input of shape \(8, 128\)'),
])
def test_bad_config_values(imagenet, tmp_path, option, error, message):
    with pytest.raises(error, match=message):
        tool('train', CLS, *options(imagenet, tmp_path / 'w', option))


def test_missing_config_keys(tmp_path):
    config = tmp_path / 'model_only.py'
    config.write_text("default_scope = 'mmpretrain'\n"
                      "model = dict(type='ImageClassifier', backbone=dict(type='SEResNet', "
                      "depth=18))\n")
    with pytest.raises(KeyError, match=r"config '\S+model_only.py' has no train_dataloader, "
                                       r'train_cfg, optim_wrapper; training needs model, '
                                       r'train_dataloader, train_cfg, optim_wrapper'):
        tool('train', config)
    with pytest.raises(KeyError, match=r'has no test_dataloader, test_evaluator, test_cfg; '
                                       r'testing needs'):
        tool('test', config, tmp_path / 'x.pth')


def test_missing_files(tmp_path, imagenet, weights):
    with pytest.raises(FileNotFoundError, match=r"config file '\S+nowhere.py' does not exist"):
        tool('train', tmp_path / 'nowhere.py')
    with pytest.raises(FileNotFoundError,
                       match=r"checkpoint file '\S+missing.pth' does not exist"):
        tool('test', CLS, tmp_path / 'missing.pth', *options(imagenet, tmp_path / 'w'))
    with pytest.raises(FileNotFoundError,
                       match=r"checkpoint file '\S+missing.pth' does not exist"):
        tool('train', CLS, '--resume', tmp_path / 'missing.pth',
             *options(imagenet, tmp_path / 'w'))


# -- checkpoints ----------------------------------------------------------------------------
def test_checkpoint_with_another_class_count(imagenet, weights, tmp_path):
    with pytest.raises(ValueError, match=re.escape(
            "does not fit the model: 2 weights have another shape (head.fc.weight: "
            "(1000, 128) in the checkpoint, (10, 128) in the model; head.fc.bias: (1000,) "
            "in the checkpoint, (10,) in the model)")):
        tool('test', CLS, weights['own'],
             *options(imagenet, tmp_path / 'w', 'model.head.num_classes=10'))


def test_checkpoint_of_another_model(imagenet, weights, tmp_path):
    with pytest.raises(ValueError) as error:
        tool('test', CLS, weights['foreign'], *options(imagenet, tmp_path / 'w'))
    message = str(error.value)
    assert re.search(r"checkpoint '\S+torchvision.pth' does not fit the model", message)
    assert "weights are not in it (backbone.conv1.weight, backbone.bn1.weight" in message
    assert 'keys the model does not have (conv1.weight, bn1.weight' in message


def test_resume_from_a_weights_file(imagenet, weights, tmp_path):
    with pytest.raises(ValueError, match=r"cannot resume from '\S+own.pth': it has no "
                                         r'training state \(meta missing\)'):
        tool('train', CLS, '--resume', weights['own'], *options(imagenet, tmp_path / 'w'))


def test_checkpoint_that_fits_evaluates(imagenet, weights, tmp_path):
    """The control of the three above: the same file and config, nothing changed."""
    tool('test', CLS, weights['own'], *options(imagenet, tmp_path / 'w'))
    [metrics] = (tmp_path / 'w').glob('*/*.json')
    assert 'accuracy/top1' in json.loads(metrics.read_text())


# -- data -----------------------------------------------------------------------------------
def test_empty_annotation_list(data_copy, tmp_path):
    (data_copy / 'meta' / 'train.txt').write_text('')
    with pytest.raises(ValueError, match=r"train_dataloader.dataset \(type='ImageNet', "
                                         rf"data_root='{data_copy}', split='train'\) has "
                                         r'no samples'):
        tool('train', CLS, *options(data_copy, tmp_path / 'w'))


def test_folder_without_images(tmp_path):
    data = tmp_path / 'data'
    (data / 'train' / 'n01440764').mkdir(parents=True)
    (data / 'val').mkdir()
    # mmpretrain's message, which names no folder, gets the dataset's settings in front
    with pytest.raises(AssertionError, match=rf"train_dataloader.dataset \(type='ImageNet', "
                                             rf"data_root='{data}', split='train'\): The "
                                             r'number of subfolders \(1\) doesn\'t match'):
        tool('train', CLS, *options(data, tmp_path / 'w'))


def test_unreadable_image(data_copy, tmp_path):
    first = (data_copy / 'meta' / 'train.txt').read_text().split()[0]
    (data_copy / 'train' / first).write_bytes(b'this is not a JPEG')
    with pytest.raises(Exception, match=rf'failed to load image: \S*{first}'):
        tool('train', CLS, *options(data_copy, tmp_path / 'w',
                                    'train_dataloader.sampler.shuffle=False'))


def test_label_out_of_range(data_copy, tmp_path):
    lines = (data_copy / 'meta' / 'train.txt').read_text().splitlines()
    name = lines[2].split()[0]
    lines[2] = f'{name} 1005'
    (data_copy / 'meta' / 'train.txt').write_text('\n'.join(lines) + '\n')
    with pytest.raises(ValueError, match=rf"label 1005 of '\S*{name}' is outside 0..999, the "
                                         r'classes of the model \(model.head.num_classes=1000\)'):
        tool('train', CLS, *options(data_copy, tmp_path / 'w'))


def test_places365_empty_list(tmp_path):
    data = tmp_path / 'places'
    make_mini_places365(str(data), train_per_class=1, val_per_class=1, test_images=1, size=32)
    (data / 'places365_train_standard.txt').write_text('')
    with pytest.raises(ValueError, match=r"train_dataloader.dataset \(type='Places365', .*"
                                         r"split='train-standard'\): \S+/places365_train_"
                                         r'standard.txt lists no images'):
        tool('train', PLACES, *options(data, tmp_path / 'w'))


@pytest.fixture(scope='module')
def coco(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp('coco')
    make_mini_coco(str(data), num_train=2, num_val=1)
    return data


def det_options(data: Path, work_dir: Path, *extra: str) -> list[str]:
    return ['--work-dir', work_dir, '--cfg-options',
            *(f'{k}={v}' for k, v in mini_coco_cfg_options(str(data)).items()),
            'train_cfg.max_iters=1', f'experiment_name={uuid.uuid4().hex}', *extra]


def test_detection_dataset_without_images(coco, tmp_path):
    import shutil
    data = Path(shutil.copytree(coco, tmp_path / 'coco'))
    ann_file = data / 'annotations' / 'instances_train.json'
    content = json.loads(ann_file.read_text())
    ann_file.write_text(json.dumps(dict(content, images=[], annotations=[])))
    with pytest.raises(ValueError, match=r"train_dataloader.dataset \(type='CheckedCocoDataset'"
                                         r".*\) has no samples after its filter_cfg"):
        tool('train', DET, *det_options(data, tmp_path / 'w'))


def test_detection_categories_not_in_the_config(coco, tmp_path):
    with pytest.raises(ValueError, match=r"categories \{3: 'triangle'\} \(id: name\) of "
                                         r"'\S+instances_train.json' are not in the config's "
                                         r'metainfo.classes .* their annotations would be '
                                         r'dropped'):
        tool('train', DET, *det_options(
            coco, tmp_path / 'w', 'train_dataloader.dataset.metainfo.classes=[circle,square]',
            'model.roi_head.bbox_head.num_classes=2'))


def test_detection_head_with_another_class_count(coco, tmp_path):
    with pytest.raises(ValueError, match=r'model.roi_head.bbox_head.num_classes is 5, but '
                                         r'train_dataloader.dataset has 3 classes '
                                         r"\('circle', 'square', 'triangle'\)"):
        tool('train', DET, *det_options(coco, tmp_path / 'w',
                                        'model.roi_head.bbox_head.num_classes=5'))


def test_detection_neck_widths_that_do_not_fit_the_backbone(coco, tmp_path):
    """The backbone's last stage has 128 channels (base_channels 16); the neck expects 256."""
    with pytest.raises(RuntimeError, match=r'--> in model\.neck\.lateral_convs\.3\.conv '
                                           r'\(Conv2d\(256, 64, .*\)\), called with input of '
                                           r'shape \(\d+, 128, 4, 4\): check the config values '
                                           r'that size model\.neck'):
        tool('train', DET, *det_options(coco, tmp_path / 'w',
                                        'model.neck.in_channels=[16,32,64,256]'))
