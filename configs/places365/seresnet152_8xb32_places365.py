# SE-ResNet-152 on Places365-Challenge: resnet152_8xb32_places365.py with SE blocks (ratio 16),
# nothing else changed, so the two differ only by SE.
_base_ = './resnet152_8xb32_places365.py'

model = dict(backbone=dict(type='SEResNet'))
