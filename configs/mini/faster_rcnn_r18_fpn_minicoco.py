# Faster R-CNN, a narrow ResNet-18 + FPN trained from scratch on the generated mini COCO
# dataset: end to end on a CPU in a few minutes. The baseline of
# faster_rcnn_se_r18_fpn_minicoco.py, which differs only in the backbone.
#
# Make the data first: python -m seplugin.datasets.mini_coco --out data/mini_coco
# (tools/demo.py does it, then trains and evaluates both detectors).
# A shorter run: --cfg-options train_cfg.max_iters=N train_cfg.val_interval=N
# default_hooks.checkpoint.interval=N (the LR steps, at 75% and 90% of 600, are then
# simply not reached). Another dataset root: see mini_coco_cfg_options() in
# seplugin/datasets/mini_coco.py.
_base_ = '../faster_rcnn_r50_fpn_coco.py'

data_root = 'data/mini_coco/'
classes = ('circle', 'square', 'triangle')
image_size = 128
max_iters = 600

# Widths 16-32-64-128 instead of 64-...-512, 64-channel FPN and heads, no pretrained
# weights (none are reachable offline), BN trained with the rest.
model = dict(
    backbone=dict(
        depth=18,
        base_channels=16,
        frozen_stages=-1,
        norm_eval=False,
        init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        # torchvision's RoIAlign is much faster than mmcv's on a CPU; a fixed sampling
        # ratio keeps its cost independent of the RoI size.
        bbox_roi_extractor=dict(
            out_channels=64, roi_layer=dict(sampling_ratio=2, use_torchvision=True)),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=len(classes))),
    # A handful of objects per image need far fewer proposals and RoI samples than COCO.
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=100)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=8,
    # Workers would compete with training for the two cores this config is made for.
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        data_root=data_root,
        metainfo=dict(classes=classes),
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=dict(classes=classes),
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[int(max_iters * 0.75), int(max_iters * 0.9)], gamma=0.1),
]
optim_wrapper = dict(optimizer=dict(lr=0.02, momentum=0.9, weight_decay=0.0001))

default_hooks = dict(
    # validation metrics logged against the iteration, not the (single) epoch
    logger=dict(interval=50, log_metric_by_epoch=False),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
