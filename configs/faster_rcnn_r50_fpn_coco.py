# Faster R-CNN, ResNet-50 + FPN, 1x schedule on COCO 2017: the baseline of the SE configs.
#
# MMDetection's own config with two changes: the backbone starts from MMPretrain's
# ImageNet ResNet-50 (configs/_base_/imagenet_weights.py says why; mmdet's starts from
# torchvision's), and the dataset is seplugin's CheckedCocoDataset, which stops at once,
# naming the file or id, on a missing annotation file or image or on categories that do not
# match the classes.
#
# Offline: fetch the checkpoint named in configs/_base_/imagenet_weights.py and add
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH/TO/FILE.pth
# (the download error prints the file and this line).
#
# Data: data/coco/{annotations/instances_train2017.json, train2017/, val2017/,
# annotations/instances_val2017.json}. For another COCO-format dataset, give every place that
# names a file, plus its classes, e.g. (data/my/ with annotations/{train,val}.json,
# images in train/ and val/, classes a and b):
#   python tools/train.py configs/faster_rcnn_se_r50_fpn_coco.py --cfg-options \
#     train_dataloader.dataset.data_root=data/my/ \
#     train_dataloader.dataset.ann_file=annotations/train.json \
#     train_dataloader.dataset.data_prefix.img=train/ \
#     val_dataloader.dataset.data_root=data/my/ \
#     val_dataloader.dataset.ann_file=annotations/val.json \
#     val_dataloader.dataset.data_prefix.img=val/ \
#     test_dataloader.dataset.data_root=data/my/ \
#     test_dataloader.dataset.ann_file=annotations/val.json \
#     test_dataloader.dataset.data_prefix.img=val/ \
#     val_evaluator.ann_file=data/my/annotations/val.json \
#     test_evaluator.ann_file=data/my/annotations/val.json \
#     "train_dataloader.dataset.metainfo.classes=('a','b')" \
#     "val_dataloader.dataset.metainfo.classes=('a','b')" \
#     "test_dataloader.dataset.metainfo.classes=('a','b')" \
#     model.roi_head.bbox_head.num_classes=2
# or, shorter, a config that inherits this one and sets the same keys (configs/mini/ does).
_base_ = ['mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', './_base_/imagenet_weights.py']

custom_imports = dict(imports=['seplugin'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        init_cfg=dict(type='Pretrained', checkpoint=_base_.imagenet_weights.resnet50,
                      prefix='backbone.')))

# Base variables are resolved when the base is read, so each dataset is set explicitly.
train_dataloader = dict(dataset=dict(type='CheckedCocoDataset'))
val_dataloader = dict(dataset=dict(type='CheckedCocoDataset'))
test_dataloader = val_dataloader
