# Faster R-CNN, SE-ResNet-101 + FPN, 1x schedule on COCO 2017: the paper's protocol
# (Table 7). Starts from MMPretrain's ImageNet SE-ResNet-101; its baseline
# faster_rcnn_r101_fpn_coco.py from MMPretrain's ImageNet ResNet-101.
_base_ = './faster_rcnn_r101_fpn_coco.py'

model = dict(
    backbone=dict(
        type='SEResNet',
        init_cfg=dict(checkpoint=_base_.imagenet_weights.seresnet101)))
