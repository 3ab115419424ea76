from seplugin.registry import DATASETS, MMDET, MMPRETRAIN, register_missing

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


def __getattr__(name: str):
    """The mini COCO generator, imported on first use: importing it here would make
    ``python -m seplugin.datasets.mini_coco`` run a module already imported (runpy warns
    of "unpredictable behaviour")."""
    if name in ('make_mini_coco', 'mini_coco_cfg_options'):
        from . import mini_coco
        return getattr(mini_coco, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
