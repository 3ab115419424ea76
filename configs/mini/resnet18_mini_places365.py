# A narrow ResNet-18 trained from scratch on the generated mini Places365: the official
# file-list layout and 365-class categories file, with 256 training and 128 validation
# images of 40x40 pixels for 8 of the labels. The baseline of seresnet18_mini_places365.py,
# which differs only in the backbone.
#
# Make the data first, from the repository root:
#   python -m seplugin.datasets.mini_cls places365 --out data/mini_places365
# then: python tools/train.py configs/mini/resnet18_mini_places365.py
#
# resnet18_mini_imagenet.py (model, pipeline, schedule: see there) with seplugin's Places365
# dataset and a 365-class head. Chance is 1/8 top-1 for a model that has learnt which labels
# occur.
_base_ = './resnet18_mini_imagenet.py'

custom_imports = dict(imports=['seplugin'], allow_failed_imports=False)

data_root = 'data/mini_places365'
num_classes = 365

data_preprocessor = dict(num_classes=num_classes)
model = dict(head=dict(num_classes=num_classes))

train_dataloader = dict(
    dataset=dict(type='Places365', data_root=data_root, split='train-standard',
                 resolution='256'))
val_dataloader = dict(
    dataset=dict(type='Places365', data_root=data_root, split='val', resolution='256'))
test_dataloader = val_dataloader
