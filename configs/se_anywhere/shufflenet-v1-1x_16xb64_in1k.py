# ShuffleNet V1 1x (g=3) on ImageNet-1k: MMPretrain's recipe unchanged, the baseline of
# se-shufflenet-v1-1x_16xb64_in1k.py (the paper's Table 3 row).
_base_ = 'mmpretrain::shufflenet_v1/shufflenet-v1-1x_16xb64_in1k.py'

custom_imports = dict(imports=['seplugin'], allow_failed_imports=False)
