# Faster R-CNN, the baseline's ImageNet ResNet-101 plus SE layers that start neutral, FPN,
# 1x schedule on COCO 2017: faster_rcnn_r50_plus_neutral_se_fpn_coco.py (see there) at depth
# 101, paired with faster_rcnn_r101_fpn_coco.py. Not the paper's protocol.
_base_ = './faster_rcnn_r101_fpn_coco.py'

model = dict(backbone=dict(type='SEResNet'))
