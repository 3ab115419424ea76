# SE-ResNet-101 on ImageNet-1k: resnet101_8xb32_in1k.py with SE blocks (ratio 16), nothing
# else changed, so the two differ only by SE.
_base_ = './resnet101_8xb32_in1k.py'

model = dict(backbone=dict(type='SEResNet'))
