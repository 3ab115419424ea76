# Faster R-CNN, a narrow SE-ResNet-18 + FPN trained from scratch on the generated mini COCO
# dataset. Identical to faster_rcnn_r18_fpn_minicoco.py except for the backbone: SE in every
# block, ratio 4 so that the 16-channel first stage still squeezes to 4 channels.
_base_ = './faster_rcnn_r18_fpn_minicoco.py'

model = dict(backbone=dict(type='SEResNet', se_ratio=4))
