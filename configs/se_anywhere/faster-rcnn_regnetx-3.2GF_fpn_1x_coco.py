# Faster R-CNN, RegNetX-3.2GF + FPN, 1x on COCO: mmdet's config unchanged (the backbone
# starts from open-mmlab://regnetx_3.2gf), the baseline of
# se-faster-rcnn_regnetx-3.2GF_fpn_1x_coco.py.
_base_ = 'mmdet::regnet/faster-rcnn_regnetx-3.2GF_fpn_1x_coco.py'

custom_imports = dict(imports=['seplugin'], allow_failed_imports=False)
