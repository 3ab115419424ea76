# Faster R-CNN, ResNet-101 + FPN, 1x schedule on COCO 2017: the baseline of the SE-ResNet-101
# config. The same change to faster_rcnn_r50_fpn_coco.py (data, schedule, how to use another
# dataset: see there) as mmdet's faster-rcnn_r101_fpn_1x_coco.py makes to its ResNet-50 one.
_base_ = './faster_rcnn_r50_fpn_coco.py'

model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')))
