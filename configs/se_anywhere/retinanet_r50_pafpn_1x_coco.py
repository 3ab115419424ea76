# RetinaNet, ResNet-50 + PAFPN, 1x on COCO: mmdet's retinanet_r50_fpn_1x_coco.py with
# mmdet's PAFPN for its FPN (same arguments), the baseline of
# se-neck_retinanet_r50_pafpn_1x_coco.py. The backbone starts from torchvision's ImageNet
# ResNet-50, as mmdet's config does.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['seplugin'], allow_failed_imports=False)

model = dict(neck=dict(type='PAFPN'))
