# Faster R-CNN, the baseline's ImageNet ResNet-50 plus SE layers that start neutral, FPN,
# 1x schedule on COCO 2017. Not the paper's protocol (that is faster_rcnn_se_r50_fpn_coco.py):
# it measures what SE adds when it is only introduced at fine-tuning time. The trunk loads
# the baseline's checkpoint; the SE layers, absent from it, start as constant gates divided
# out of the preceding BN once it has loaded (a load_state_dict post-hook of SEResNet,
# _start_missing_se_neutral, not init_weights), so the detector starts from exactly the
# baseline's function. The pair with faster_rcnn_r50_fpn_coco.py differs only by SE.
_base_ = './faster_rcnn_r50_fpn_coco.py'

model = dict(backbone=dict(type='SEResNet'))
