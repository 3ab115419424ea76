from seplugin.registry import MMDET, register_missing

__all__ = []
if MMDET:  # MMDetection's FPN with SE
    from .se_fpn import SEFPN, SEConvModule
    from .se_neck import SENeck, SENeckMixin, insert_se_neck
    __all__ += ['SEConvModule', 'SEFPN', 'SENeck', 'SENeckMixin', 'insert_se_neck']
else:
    register_missing('SEFPN', 'mmdet')
