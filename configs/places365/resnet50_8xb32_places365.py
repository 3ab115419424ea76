# ResNet-50 on Places365-Challenge (365 scene classes), the baseline of
# seresnet50_8xb32_places365.py, which differs only in the backbone type.
#
# MMPretrain's ImageNet ResNet recipe (resnet50_8xb32_in1k.py: 8 GPUs x 32 images, SGD lr 0.1,
# RandomResizedCrop 224 + flip; test resize 256 + centre crop 224) with a 365-class head and
# the Places365 data. The paper (Table 8, top-1 error on the validation set) trains on
# Places365-Challenge; its training schedule there is not reproduced here: Challenge has
# 8.0M images, 6.3x ImageNet's 1.28M, so 16 epochs give as many SGD steps as the 100-epoch
# ImageNet recipe, with the LR steps at the same fractions (30/60/90 of 100 -> 5/10/14 of 16).
# For Places365-Standard (1.8M images) set split='train-standard' and about 70 epochs.
#
# Data (the official archives, unpacked into data/places365):
#   categories_places365.txt, places365_train_challenge.txt, places365_val.txt,
#   data_256/ (the Challenge and Standard training images), val_256/.
# resolution='large' reads data_large/ and val_large/ instead. The test split has no labels;
# to predict it, set test_dataloader.dataset.split='test' and test_evaluator to mmpretrain's
# DumpResults (or use tools/test.py --out).
_base_ = 'mmpretrain::resnet/resnet50_8xb32_in1k.py'

custom_imports = dict(imports=['seplugin'], allow_failed_imports=False)

num_classes = 365
data_preprocessor = dict(num_classes=num_classes)
model = dict(head=dict(num_classes=num_classes))

data_root = 'data/places365'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    dataset=dict(
        type='Places365',
        data_root=data_root,
        split='train-challenge',
        resolution='256',
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        type='Places365',
        data_root=data_root,
        split='val',
        resolution='256',
        pipeline=test_pipeline))
test_dataloader = val_dataloader

param_scheduler = dict(type='MultiStepLR', by_epoch=True, milestones=[5, 10, 14], gamma=0.1)
train_cfg = dict(by_epoch=True, max_epochs=16, val_interval=1)
