# Faster R-CNN, SE-ResNet-50 + FPN, 1x schedule on COCO 2017.
# Identical to faster_rcnn_r50_fpn_coco.py (data, schedule, how to use another dataset: see
# there) except for the backbone type.
_base_ = './faster_rcnn_r50_fpn_coco.py'

model = dict(
    backbone=dict(
        type='SEResNet',
        # For now the torchvision ResNet-50 weights: the trunk loads, the SE layers start
        # from their default init (mmengine lists their keys as missing).
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')))
