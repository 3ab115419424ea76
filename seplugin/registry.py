"""Where seplugin's modules are registered, and how their names resolve in each scope.

Every module lives in seplugin's own registries (scope ``seplugin``), so
``type='seplugin.SEResNet'`` works from any scope. The same classes are also registered in
MMDetection's and MMPretrain's registries, so that configs of either library can say
``type='SEResNet'`` after ``custom_imports=dict(imports=['seplugin'])``.

MMPretrain ships its own ``SEResNet`` and ``SEResNeXt``. In the ``mmpretrain`` scope these
two names are replaced by seplugin's classes, which accept every argument of MMPretrain's,
load its checkpoints with ``strict=True`` and give the same outputs (tests check both), and
add the SE options of the paper. MMPretrain's own classes stay importable from
``mmpretrain.models``. The replacement happens only when seplugin is imported.
"""
import mmdet.models  # noqa: F401  (fills MMDetection's registry before we add to it)
import mmpretrain.datasets  # noqa: F401
import mmpretrain.models  # noqa: F401  (same: a later lazy import would clash with ours)
from mmdet.registry import MODELS as MMDET_MODELS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry
from mmpretrain.registry import DATASETS as MMPRETRAIN_DATASETS
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='seplugin',
                  locations=['seplugin.models'])
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope='seplugin',
                    locations=['seplugin.datasets'])

# Names that seplugin deliberately takes over in the mmpretrain scope (see module docstring).
REPLACED_IN_MMPRETRAIN = ('SEResNet', 'SEResNeXt')


def register_model(cls: type) -> type:
    """Register a model class in seplugin's, MMDetection's and MMPretrain's registries."""
    MODELS.register_module(module=cls)
    MMDET_MODELS.register_module(module=cls)
    MMPRETRAIN_MODELS.register_module(
        module=cls, force=cls.__name__ in REPLACED_IN_MMPRETRAIN)
    return cls


def register_dataset(cls: type) -> type:
    """Register a classification dataset in seplugin's and MMPretrain's registries."""
    DATASETS.register_module(module=cls)
    MMPRETRAIN_DATASETS.register_module(module=cls)
    return cls
