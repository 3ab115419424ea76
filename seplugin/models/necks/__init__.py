from .se_fpn import SEConvModule, SEFPN

__all__ = ['SEConvModule', 'SEFPN']
