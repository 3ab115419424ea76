# Faster R-CNN, the narrow SE-ResNet-18 + FPN on the generated mini COCO dataset, starting
# from the SE-ResNet-18 pretrained on the mini ImageNet with
# configs/mini/seresnet18_mini_imagenet.py (SE layers included). Identical to
# faster_rcnn_r18_fpn_minicoco_pretrained.py (see there) except for the backbone and the
# checkpoint it starts from.
_base_ = './faster_rcnn_r18_fpn_minicoco_pretrained.py'

model = dict(
    backbone=dict(
        type='SEResNet', se_ratio=4,
        init_cfg=dict(checkpoint='work_dirs/demo/pretrain/se/seed0/epoch_20.pth')))
