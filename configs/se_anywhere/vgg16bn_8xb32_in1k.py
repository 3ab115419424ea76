# VGG-16 with BN on ImageNet-1k: MMPretrain's recipe unchanged, the baseline of
# se-vgg16bn_8xb32_in1k.py (the paper's VGG-16 has BN after each conv too, Table 2).
_base_ = 'mmpretrain::vgg/vgg16bn_8xb32_in1k.py'

custom_imports = dict(imports=['seplugin'], allow_failed_imports=False)
