# ResNeXt-101 (32x4d) on ImageNet-1k: MMPretrain's recipe unchanged (8 GPUs x 32 images,
# SGD lr 0.1, 100 epochs, LR /10 at epochs 30, 60, 90; as MMPretrain's ResNeXt configs, the
# pipeline resizes with PIL rather than cv2). The baseline of
# seresnext101-32x4d_8xb32_in1k.py, which differs only in the backbone type.
# Data: data/imagenet as MMPretrain prepares it (train/, val/, meta/).
_base_ = 'mmpretrain::resnext/resnext101-32x4d_8xb32_in1k.py'

custom_imports = dict(imports=['seplugin'], allow_failed_imports=False)
