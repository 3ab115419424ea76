# Faster R-CNN, SE-ResNet-101 + FPN, 1x schedule on COCO 2017.
# Identical to faster_rcnn_r101_fpn_coco.py except for the backbone type.
_base_ = './faster_rcnn_r101_fpn_coco.py'

model = dict(
    backbone=dict(
        type='SEResNet',
        # For now the torchvision ResNet-101 weights: the trunk loads, the SE layers start
        # from their default init (mmengine lists their keys as missing).
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')))
