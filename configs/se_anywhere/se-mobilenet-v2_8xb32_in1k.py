# SE-MobileNetV2: mobilenet-v2_8xb32_in1k.py with SE (r=16) after the linear 1x1 conv of
# every inverted residual that adds its input, nothing else changed.
_base_ = './mobilenet-v2_8xb32_in1k.py'

model = dict(backbone=dict(_delete_=True, type='SEBackbone', backbone=_base_.model.backbone))
