from importlib.util import find_spec

from .se_block import SE_POSITIONS, SEBasicBlock, SEBottleneck, SEResNeXtBottleneck
from .se_resnet import SEResNet
from .se_resnext import SEResNeXt

__all__ = ['SE_POSITIONS', 'SEBasicBlock', 'SEBottleneck', 'SEResNeXtBottleneck', 'SEResNet',
           'SEResNeXt']

if find_spec('mmpretrain') is not None:  # the mmpretrain scope's SEResNet/SEResNeXt
    from .mmpretrain_se_resnet import MMPretrainSEResNet, MMPretrainSEResNeXt
    __all__ += ['MMPretrainSEResNet', 'MMPretrainSEResNeXt']
