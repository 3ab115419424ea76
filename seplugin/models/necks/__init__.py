from .se_fpn import SEFPN, SEConvModule

__all__ = ['SEConvModule', 'SEFPN']
