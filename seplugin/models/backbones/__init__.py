from seplugin.registry import MMDET, register_missing

__all__ = []
if MMDET:  # MMDetection's ResNet and ResNeXt with SE
    from .se_block import SE_POSITIONS, SEBasicBlock, SEBottleneck, SEResNeXtBottleneck
    from .se_resnet import SEResNet
    from .se_resnext import SEResNeXt
    __all__ += ['SE_POSITIONS', 'SEBasicBlock', 'SEBottleneck', 'SEResNeXtBottleneck',
                'SEResNet', 'SEResNeXt']
else:
    register_missing('SEResNet', 'mmdet')
    register_missing('SEResNeXt', 'mmdet')
