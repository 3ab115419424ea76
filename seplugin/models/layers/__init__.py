from .se_layer import GATES, SQUEEZES, SELayer, squeeze_width

__all__ = ['GATES', 'SQUEEZES', 'SELayer', 'squeeze_width']
