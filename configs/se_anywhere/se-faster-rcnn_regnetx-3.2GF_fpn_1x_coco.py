# Faster R-CNN with SE-RegNetX-3.2GF: the baseline's backbone, its published ImageNet
# weights included (init_cfg), with SE (r=16) in every block. The plain weights load
# without key edits and start the SE layers neutral: the detector starts computing what
# the baseline's starts with.
_base_ = './faster-rcnn_regnetx-3.2GF_fpn_1x_coco.py'

model = dict(backbone=dict(_delete_=True, type='SEBackbone', backbone=_base_.model.backbone))
