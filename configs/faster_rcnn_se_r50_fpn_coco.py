# Faster R-CNN, SE-ResNet-50 + FPN, 1x schedule on COCO 2017: the paper's protocol (Table 7).
# The backbone starts from MMPretrain's ImageNet SE-ResNet-50 (SE layers included), the
# baseline faster_rcnn_r50_fpn_coco.py from MMPretrain's ImageNet ResNet-50: the pair differs
# only by SE and the backbone's pretraining. Data, schedule, another dataset, offline use:
# see faster_rcnn_r50_fpn_coco.py.
_base_ = './faster_rcnn_r50_fpn_coco.py'

model = dict(
    backbone=dict(
        type='SEResNet',
        init_cfg=dict(checkpoint=_base_.imagenet_weights.seresnet50)))
