from seplugin.registry import DATASETS, MMDET, MMPRETRAIN, register_missing

from .mini_coco import make_mini_coco, mini_coco_cfg_options

__all__ = ['make_mini_coco', 'mini_coco_cfg_options']
if MMDET:
    from .coco import CheckedCocoDataset
    __all__ += ['CheckedCocoDataset']
else:
    register_missing('CheckedCocoDataset', 'mmdet', DATASETS)
if MMPRETRAIN:
    from .places365 import PLACES365_CATEGORIES, Places365
    __all__ += ['PLACES365_CATEGORIES', 'Places365']
else:
    register_missing('Places365', 'mmpretrain', DATASETS)
