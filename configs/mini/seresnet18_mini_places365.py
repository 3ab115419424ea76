# A narrow SE-ResNet-18 trained from scratch on the generated mini Places365 (data: see
# resnet18_mini_places365.py). Identical to resnet18_mini_places365.py except for the
# backbone: SE in every block, ratio 4 so that the 16-channel first stage still squeezes to
# 4 channels.
#
# Make the data first, from the repository root:
#   python -m seplugin.datasets.mini_cls places365 --out data/mini_places365
_base_ = './resnet18_mini_places365.py'

# divisor=1: the paper's floor(C / r) (4 channels in the first stage), where the
# mmpretrain scope's default rounds to multiples of 8 as MMPretrain does.
model = dict(backbone=dict(type='SEResNet', se_ratio=4, se_cfg=dict(divisor=1)))
