# Faster R-CNN, ResNet-50 + SE-FPN (SE on the lateral maps), 1x schedule on COCO 2017.
# Identical to faster_rcnn_r50_fpn_coco.py except for the neck type.
_base_ = './faster_rcnn_r50_fpn_coco.py'

model = dict(neck=dict(type='SEFPN'))
