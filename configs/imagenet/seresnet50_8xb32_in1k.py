# SE-ResNet-50 on ImageNet-1k: resnet50_8xb32_in1k.py with SE blocks (ratio 16), nothing
# else changed, so the two differ only by SE. (MMPretrain's own seresnet50 config trains
# 140 epochs with another resize, which would not isolate the effect of SE.)
_base_ = './resnet50_8xb32_in1k.py'

model = dict(backbone=dict(type='SEResNet'))
