# SE-ResNet-18 on ImageNet-1k: resnet18_8xb32_in1k.py with SE blocks (ratio 16), nothing
# else changed, so the two differ only by SE.
_base_ = './resnet18_8xb32_in1k.py'

model = dict(backbone=dict(type='SEResNet'))
