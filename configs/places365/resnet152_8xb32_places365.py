# ResNet-152 on Places365-Challenge: resnet50_8xb32_places365.py (data, schedule, pipeline:
# see there) with a 152-layer backbone. The baseline of seresnet152_8xb32_places365.py,
# which differs only in the backbone type: the paper's scene-classification pair, with top-1
# errors of 41.15 (ResNet-152) and 40.37 (SE-ResNet-152) on the validation set.
_base_ = './resnet50_8xb32_places365.py'

model = dict(backbone=dict(depth=152))
