# MobileNetV2 1x on ImageNet-1k: MMPretrain's recipe unchanged, the baseline of
# se-mobilenet-v2_8xb32_in1k.py.
_base_ = 'mmpretrain::mobilenet_v2/mobilenet-v2_8xb32_in1k.py'

custom_imports = dict(imports=['seplugin'], allow_failed_imports=False)
