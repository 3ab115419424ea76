# SE-ResNeXt-50 (32x4d) on ImageNet-1k: resnext50-32x4d_8xb32_in1k.py with SE blocks
# (ratio 16), nothing else changed, so the two differ only by SE.
_base_ = './resnext50-32x4d_8xb32_in1k.py'

model = dict(backbone=dict(type='SEResNeXt'))
