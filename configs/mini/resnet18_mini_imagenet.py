# A narrow ResNet-18 trained from scratch on the generated mini ImageNet: 8 classes, 256
# training and 128 validation images of 40x40 pixels; 10-20 s on two CPU cores. The baseline
# of seresnet18_mini_imagenet.py, which differs only in the backbone.
#
# Make the data first, from the repository root:
#   python -m seplugin.datasets.mini_cls imagenet --out data/mini_imagenet
# then: python tools/train.py configs/mini/resnet18_mini_imagenet.py
#
# MMPretrain's ResNet-18 ImageNet config scaled down: widths 16-32-64-128 instead of
# 64-...-512, crops of 32 instead of 224, 20 epochs. The dataset is mmpretrain's ImageNet
# with its 1000 classes; the mini set uses labels 0..7, so chance is 1/8 top-1 for a model
# that has learnt which labels occur.
_base_ = 'mmpretrain::resnet/resnet18_8xb32_in1k.py'

custom_imports = dict(imports=['seplugin'], allow_failed_imports=False)

data_root = 'data/mini_imagenet'
max_epochs = 20

# mmpretrain's ResNet defaults stem_channels to 64 whatever base_channels is, mmdet's (which
# seplugin's SE-ResNet extends) to base_channels: set both so the two backbones match.
model = dict(
    backbone=dict(stem_channels=16, base_channels=16),
    head=dict(in_channels=128))

# The ImageNet pipeline at a 40-pixel scale (224/256 -> 32/36). Crops keep at least half of
# the image: the default 8% of a 40-pixel image would keep a few pixels of pattern.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.5, 1.0)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=36, edge='short'),
    dict(type='CenterCrop', crop_size=32),
    dict(type='PackInputs'),
]
# num_workers=0: decoding 40-pixel JPEGs costs next to nothing, and worker processes would
# compete with training for the CPU cores.
train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64,
    num_workers=0,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

# SGD lr 0.1 as in the base config, for 20 short epochs (8 iterations each).
param_scheduler = dict(type='MultiStepLR', by_epoch=True, milestones=[12, 17], gamma=0.1)
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=5)
default_hooks = dict(
    logger=dict(interval=4),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))

randomness = dict(seed=0, deterministic=False)
