from seplugin.registry import MMDET, MMPRETRAIN, register_missing

__all__ = []
if MMDET:  # MMDetection's ResNet and ResNeXt with SE
    from .se_block import SE_POSITIONS, SEBasicBlock, SEBottleneck, SEResNeXtBottleneck
    from .se_resnet import SEResNet
    from .se_resnext import SEResNeXt
    __all__ += ['SE_POSITIONS', 'SEBasicBlock', 'SEBottleneck', 'SEResNeXtBottleneck',
                'SEResNet', 'SEResNeXt']
    from .se_backbone import MMPretrainSEBackbone, SEBackbone, SEBackboneMixin, insert_se
    __all__ += ['MMPretrainSEBackbone', 'SEBackbone', 'SEBackboneMixin', 'insert_se']
    if MMPRETRAIN:  # the mmpretrain scope's SEResNet/SEResNeXt
        from .mmpretrain_se_resnet import MMPretrainSEResNet, MMPretrainSEResNeXt
        __all__ += ['MMPretrainSEResNet', 'MMPretrainSEResNeXt']
else:
    register_missing('SEResNet', 'mmdet')
    register_missing('SEResNeXt', 'mmdet')
