# YOLOX-S, 300 epochs on COCO: mmdet's config unchanged, the baseline of
# se-yolox_s_8xb8-300e_coco.py.
_base_ = 'mmdet::yolox/yolox_s_8xb8-300e_coco.py'

custom_imports = dict(imports=['seplugin'], allow_failed_imports=False)
