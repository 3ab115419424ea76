# YOLOX-S with SE in backbone and neck: SE (r=16) in every CSPDarknet bottleneck that adds
# its input and on the three maps YOLOXPAFPN returns, fine-tuned from mmdet's published
# YOLOX-S (load_from, mmdet's configs/yolox/metafile.yml). The checkpoint loads without
# key edits; its SE layers start neutral (gates 1 - 4.5e-5: YOLOX's Swish takes no scale).
_base_ = './yolox_s_8xb8-300e_coco.py'

model = dict(
    backbone=dict(_delete_=True, type='SEBackbone', backbone=_base_.model.backbone),
    neck=dict(_delete_=True, type='SENeck', neck=_base_.model.neck, se_outputs=True))

load_from = ('https://download.openmmlab.com/mmdetection/v2.0/yolox/yolox_s_8x8_300e_coco/'
             'yolox_s_8x8_300e_coco_20211121_095711-4592a793.pth')
