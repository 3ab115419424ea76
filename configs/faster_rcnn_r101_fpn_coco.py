# Faster R-CNN, ResNet-101 + FPN, 1x schedule on COCO 2017: the baseline of the SE-ResNet-101
# configs. The same change to faster_rcnn_r50_fpn_coco.py (data, schedule, how to use another
# dataset: see there) as mmdet's faster-rcnn_r101_fpn_1x_coco.py makes to its ResNet-50 one,
# starting from MMPretrain's ImageNet ResNet-101.
_base_ = './faster_rcnn_r50_fpn_coco.py'

model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(checkpoint=_base_.imagenet_weights.resnet101)))
