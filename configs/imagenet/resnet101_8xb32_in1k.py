# ResNet-101 on ImageNet-1k: MMPretrain's recipe unchanged (8 GPUs x 32 images, SGD lr 0.1,
# 100 epochs, LR /10 at epochs 30, 60, 90; RandomResizedCrop 224 + flip, test resize 256 +
# centre crop 224). The baseline of seresnet101_8xb32_in1k.py, which differs only in the
# backbone type. Data: data/imagenet as MMPretrain prepares it (train/, val/, meta/).
_base_ = 'mmpretrain::resnet/resnet101_8xb32_in1k.py'

custom_imports = dict(imports=['seplugin'], allow_failed_imports=False)
