"""Where seplugin's modules are registered, and how their names resolve in each scope.

Every module lives in seplugin's own registries (scope ``seplugin``), so
``type='seplugin.SEResNet'`` works from any scope. The same classes are also registered in
the registries of MMDetection and MMPretrain, of those that are installed, so that configs
of either library can say ``type='SEResNet'`` after
``custom_imports=dict(imports=['seplugin'])``.

seplugin needs only one of the two libraries. :data:`MMDET` and :data:`MMPRETRAIN` say
which are installed; a module that needs one imports it only when it is there (see
``seplugin/models/__init__.py`` and ``seplugin/datasets/__init__.py``). SEResNet,
SEResNeXt and SEFPN are MMDetection's ResNet, ResNeXt and FPN with SE, so they need
MMDetection even in MMPretrain configs; without it, their names in seplugin's registry
build a placeholder that says so (:func:`register_missing`), and MMPretrain's own
``SEResNet`` keeps its name in the mmpretrain scope.

MMPretrain ships its own ``SEResNet`` and ``SEResNeXt``. In the ``mmpretrain`` scope these
two names are replaced, when seplugin is imported, by seplugin's classes with MMPretrain's
defaults and state-dict layout (``MMPretrainSEResNet``/``MMPretrainSEResNeXt``);
MMPretrain's own classes stay importable from ``mmpretrain.models``.
"""
from importlib.util import find_spec

from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry


def installed(package: str) -> bool:
    """Whether ``package`` can be imported (found, not imported: an installed package
    that then fails to import raises its own error where it is used)."""
    try:
        return find_spec(package) is not None
    except (ImportError, ValueError):
        return False


MMDET = installed('mmdet')
MMPRETRAIN = installed('mmpretrain')

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='seplugin',
                  locations=['seplugin.models'])
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope='seplugin',
                    locations=['seplugin.datasets'])

# The registries of the installed libraries. Their model packages are imported first: they
# fill their registries on import, and a later (lazy) import would clash with our names.
MODEL_REGISTRIES = {'seplugin': MODELS}
DATASET_REGISTRIES = {'seplugin': DATASETS}
if MMDET:
    import mmdet.models  # noqa: F401
    from mmdet.registry import DATASETS as MMDET_DATASETS
    from mmdet.registry import MODELS as MMDET_MODELS
    MODEL_REGISTRIES['mmdet'] = MMDET_MODELS
    DATASET_REGISTRIES['mmdet'] = MMDET_DATASETS
if MMPRETRAIN:
    import mmpretrain.datasets  # noqa: F401
    import mmpretrain.models  # noqa: F401
    from mmpretrain.registry import DATASETS as MMPRETRAIN_DATASETS
    from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
    MODEL_REGISTRIES['mmpretrain'] = MMPRETRAIN_MODELS
    DATASET_REGISTRIES['mmpretrain'] = MMPRETRAIN_DATASETS

# MMPretrain's own names, which seplugin takes over in the mmpretrain scope with classes of
# MMPretrain's defaults and layout (seplugin/models/backbones/mmpretrain_se_resnet.py).
REPLACED_IN_MMPRETRAIN = ('SEResNet', 'SEResNeXt')


def register_model(cls: type) -> type:
    """Register a model class in seplugin's registry and in those of the installed
    libraries (MMDetection, MMPretrain); the names of ``REPLACED_IN_MMPRETRAIN`` get their
    MMPretrain-flavoured classes there instead."""
    for scope, registry in MODEL_REGISTRIES.items():
        if not (scope == 'mmpretrain' and cls.__name__ in REPLACED_IN_MMPRETRAIN):
            registry.register_module(module=cls)
    return cls


def register_dataset(cls: type, scopes: tuple[str, ...] = ('mmdet', 'mmpretrain')) -> type:
    """Register a dataset class in seplugin's registry and in those of ``scopes`` that are
    installed (a detection dataset belongs in MMDetection's, a classification one in
    MMPretrain's)."""
    for scope, registry in DATASET_REGISTRIES.items():
        if scope == 'seplugin' or scope in scopes:
            registry.register_module(module=cls)
    return cls


def register_missing(name: str, package: str, registry: Registry = MODELS) -> None:
    """Register ``name`` in seplugin's own registry as a placeholder that raises an
    ImportError saying that it needs ``package``, which is not installed. Only seplugin's
    registry: in the other libraries' scopes the name stays theirs, or unknown."""

    def needs_package(*args, **kwargs):
        raise ImportError(f'seplugin.{name} needs {package}, which is not installed '
                          f'(pip install {package})')

    needs_package.__name__ = name
    registry.register_module(name=name, module=needs_package)
