# SE-ResNet-50 on Places365-Challenge: resnet50_8xb32_places365.py with SE blocks (ratio 16),
# nothing else changed, so the two differ only by SE.
_base_ = './resnet50_8xb32_places365.py'

model = dict(backbone=dict(type='SEResNet'))
