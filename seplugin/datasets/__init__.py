from .coco import CheckedCocoDataset
from .mini_coco import make_mini_coco, mini_coco_cfg_options
from .places365 import PLACES365_CATEGORIES, Places365

__all__ = ['CheckedCocoDataset', 'make_mini_coco', 'mini_coco_cfg_options', 'PLACES365_CATEGORIES',
           'Places365']
