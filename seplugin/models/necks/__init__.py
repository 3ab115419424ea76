from seplugin.registry import MMDET, register_missing

__all__ = []
if MMDET:  # MMDetection's FPN with SE
    from .se_fpn import SEFPN, SEConvModule
    __all__ += ['SEConvModule', 'SEFPN']
else:
    register_missing('SEFPN', 'mmdet')
