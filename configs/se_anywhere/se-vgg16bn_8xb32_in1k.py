# SE-VGG-16: vgg16bn_8xb32_in1k.py with SE (r=16) after every conv-BN-ReLU block, as in
# the paper's Table 2, nothing else changed.
_base_ = './vgg16bn_8xb32_in1k.py'

model = dict(backbone=dict(_delete_=True, type='SEBackbone', backbone=_base_.model.backbone))
