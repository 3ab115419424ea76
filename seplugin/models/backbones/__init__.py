from .se_block import SE_POSITIONS, SEBasicBlock, SEBottleneck, SEResNeXtBottleneck
from .se_resnet import SEResNet
from .se_resnext import SEResNeXt

__all__ = ['SE_POSITIONS', 'SEBasicBlock', 'SEBottleneck', 'SEResNeXtBottleneck', 'SEResNet',
           'SEResNeXt']
