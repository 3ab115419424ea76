"""Convert public SE-ResNet / ResNet checkpoints into seplugin's key layout.

seplugin's layout is mmpretrain's: backbone keys under ``backbone.``, the SE layer of each
block under ``layerX.Y.se_layer.conv{1,2}.conv.{weight,bias}``, the classifier under
``head.fc.*``. Supported sources:

============== ===================================================== =====================
source          key layout                                            preprocessing
============== ===================================================== =====================
timm            ``layerX.Y.se.fc{1,2}``, ``fc``; 'd' variants have a   RGB, 0-1, ImageNet
                deep stem ``conv1.{0,1,3,4,6}``, ``bn1``               mean/std
timm-legacy     Cadene layout: ``layer0.{conv1,bn1}``,                 RGB, 0-1, ImageNet
                ``se_module.fc{1,2}``, ``last_linear``                 mean/std
cadene          pretrainedmodels ``se_resnet*``/``se_resnext*``: as    RGB, 0-1, ImageNet
                timm-legacy                                            mean/std
mmpretrain      already seplugin's: loads with no conversion          RGB, 0-255, ImageNet
                                                                      mean/std x 255
torchvision     plain ResNet/ResNeXt, no SE: trunk copied, SE layers  RGB, 0-1, ImageNet
                start neutral (see SEBlockMixin.start_se_neutral)     mean/std
============== ===================================================== =====================

The original Caffe release of SENet (and any weights converted from it without a change of
input convention) expects BGR, 0-255, mean (104, 117, 123), no std; ``DATA_PREPROCESSORS``
holds a ``data_preprocessor`` for each convention. Cadene's SE-ResNet-50/101/152 (and timm's
legacy copies) put the stride on the first 1x1 conv: they need ``style='caffe'``, which the
converter records in the backbone config it returns, with ``stem_pool='ceil'`` (Caffe's
unpadded ceil-mode max pooling, which all of Cadene's SE models keep).

Real files differ from freshly built models: Cadene's 2017 files and torchvision's original
ResNet files predate ``num_batches_tracked`` (PyTorch 0.4.1); it is filled with 0 as torch's
own BatchNorm loading does. Checkpoints may wrap the state dict (``state_dict``, ``model``,
DataParallel's ``module.``) or be ``.safetensors`` files (:func:`seplugin.checkpoint.load_file`).

Squeeze widths: each SE layer's width is read from the file and matched to one rule of
:func:`seplugin.models.layers.se_layer.squeeze_width`; the returned backbone config carries
the ``se_cfg`` that reproduces them, e.g. ``se_cfg=dict(divisor=8, min_ratio=0)`` for timm's
``seresnet18``/``seresnet34`` (8, 8, 16, 32 channels where C/16 gives 4, 8, 16, 32). Use the
printed config as it is: without that ``se_cfg`` the model has other shapes.

Every conversion builds the target model and checks each key and shape; any key of the
source that finds no place, or any place of the target left empty (except SE layers for a
plain source), is an error that counts them, names the first few and, when the keys look
like another source's, says which ``--source`` they look like: nothing is dropped silently.

Not convertible, with an error saying why: timm's tiered stems (``seresnet50t``,
``seresnext26t``), depths without an mmdet ResNet (26, 200, 269: ``seresnext26d``,
``seresnet200d``), and Cadene's SE-ResNet-18/34 (see :func:`infer_backbone`). timm's ``aa``
models (``seresnextaa101d``) have the keys of the ``d`` models but anti-aliased (average
pooled) strides: their files cannot be told apart by their keys, and the CLI refuses a
file named after them.
"""
import re
from collections.abc import Mapping

import torch
from torch import nn

SOURCES = ('timm', 'timm-legacy', 'cadene', 'mmpretrain', 'torchvision')

IMAGENET_MEAN, IMAGENET_STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
DATA_PREPROCESSORS = {
    # mmpretrain/mmdet data preprocessors take 0-255 RGB images from the pipeline
    'imagenet': dict(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD), to_rgb=True),
    'caffe': dict(mean=[103.94, 116.78, 123.68], std=[1.0, 1.0, 1.0], to_rgb=False),
}
SOURCE_PREPROCESSING = {source: 'imagenet' for source in SOURCES}

# (pattern, replacement) applied in order to each source key; first match wins.
_RULES = {
    'timm': [
        # deep stem: conv-BN-ReLU x3 in one Sequential -> mmpretrain's three ConvModules
        (r'^conv1\.0\.', 'stem.0.conv.'), (r'^conv1\.1\.', 'stem.0.bn.'),
        (r'^conv1\.3\.', 'stem.1.conv.'), (r'^conv1\.4\.', 'stem.1.bn.'),
        (r'^conv1\.6\.', 'stem.2.conv.'),
        (r'^(layer\d+\.\d+)\.se\.fc([12])\.', r'\1.se_layer.conv\2.conv.'),
        (r'^fc\.', 'head.fc.'),
    ],
    'timm-legacy': [
        (r'^layer0\.conv1\.', 'conv1.'), (r'^layer0\.bn1\.', 'bn1.'),
        (r'^(layer\d+\.\d+)\.se_module\.fc([12])\.', r'\1.se_layer.conv\2.conv.'),
        (r'^last_linear\.', 'head.fc.'),
    ],
    'torchvision': [(r'^fc\.', 'head.fc.')],
}
_RULES['cadene'] = _RULES['timm-legacy']


class ConversionError(ValueError):
    """A checkpoint does not map onto the model it should become."""


# How many keys an error names before it only counts.
SHOWN = 5
# Squeeze-width rules (se_cfg), simplest first; see squeeze_width. Always given explicitly:
# the converter builds the mmpretrain scope's SEResNet, whose default divisor is 8, while
# the mmdet scope's is 1 (the paper's floor).
SE_RULES = ({'divisor': 1}, {'divisor': 8, 'min_ratio': 0}, {'divisor': 8})


def _some(keys: list[str]) -> str:
    more = f', ... ({len(keys) - SHOWN} more)' if len(keys) > SHOWN else ''
    return ', '.join(keys[:SHOWN]) + more


def guess_source(keys) -> str | None:
    """The source whose key layout ``keys`` (original, unrenamed names) have, if any."""
    keys = [re.sub(r'^(module\.)?', '', k) for k in keys]
    if any(k.startswith('backbone.') or '.se_layer.conv1.conv.' in k for k in keys):
        return 'mmpretrain'
    if any(k.startswith('layer0.') or '.se_module.' in k for k in keys):
        return 'cadene (or timm-legacy)'
    if any('.se.fc1.' in k for k in keys):
        return 'timm'
    if any(k.startswith('layer1.0.conv1.') for k in keys):
        return 'torchvision'
    return None


def unwrap(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    """The state dict inside a checkpoint file's content, without DataParallel's ``module.``."""
    if not isinstance(checkpoint, Mapping):
        raise ConversionError(f'expected a state dict or a checkpoint dict, got '
                              f'{type(checkpoint).__name__}')
    for key in ('state_dict', 'model', 'module'):
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            checkpoint = checkpoint[key]
            break
    state = {re.sub(r'^module\.', '', k): v for k, v in checkpoint.items()}
    if not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError('the checkpoint holds no tensors under state_dict/model or at '
                              'its top level')
    return state


def rename(state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Map a source's keys onto seplugin's backbone keys (head under ``head.fc``)."""
    if source not in SOURCES:
        raise ConversionError(f'unknown source {source!r}; expected one of {SOURCES}')
    if source == 'timm' and 'conv1.0.weight' in state:  # deep stem: its BN is bn1
        state = {('stem.2.bn.' + k[4:] if k.startswith('bn1.') else k): v
                 for k, v in state.items()}
    if source == 'timm' and 'layer1.0.downsample.2.weight' in state:
        # avg_down: timm keeps an Identity in place of the stride-1 pool, mmpretrain has none
        state = {re.sub(r'^layer1\.0\.downsample\.([12])\.',
                        lambda m: f'layer1.0.downsample.{int(m[1]) - 1}.', k): v
                 for k, v in state.items()}
    out = {}
    for key, value in state.items():
        for pattern, replacement in _RULES.get(source, []):
            new = re.sub(pattern, replacement, key)
            if new != key:
                key = new
                break
        out[key] = value
    if source == 'mmpretrain':
        out = {k.removeprefix('backbone.'): v for k, v in out.items()}
    return out


def infer_backbone(state: Mapping[str, torch.Tensor], source: str) -> dict:
    """The SEResNet/SEResNeXt config whose keys and shapes a renamed state dict has."""
    from seplugin.models import SEResNet
    blocks = {}
    for key in state:
        match = re.match(r'^layer(\d)\.(\d+)\.', key)
        if match:
            stage, index = int(match[1]), int(match[2])
            blocks[stage] = max(blocks.get(stage, 0), index + 1)
    stage_blocks = tuple(blocks.get(i, 0) for i in (1, 2, 3, 4))
    bottleneck = 'layer1.0.conv3.weight' in state
    depth = next((d for d, (block, counts) in SEResNet.arch_settings.items()
                  if tuple(counts) == stage_blocks and (d >= 50) == bottleneck), None)
    if depth is None:
        raise ConversionError(f'blocks per stage {stage_blocks} '
                              f'({"Bottleneck" if bottleneck else "BasicBlock"}) match no '
                              f'ResNet depth {sorted(SEResNet.arch_settings)}')
    cfg = dict(type='SEResNet', depth=depth)
    conv2 = state['layer1.0.conv2.weight']
    groups = conv2.shape[0] // conv2.shape[1]
    if groups > 1:
        cfg.update(type='SEResNeXt', groups=groups, base_width=conv2.shape[0] // groups)
    elif source in ('timm-legacy', 'cadene') and bottleneck:
        cfg['style'] = 'caffe'  # Cadene's SEResNetBottleneck strides its first 1x1 conv
    if source in ('timm-legacy', 'cadene'):
        if not bottleneck:
            raise ConversionError(
                f'{source} SE-ResNet-{depth} cannot be reproduced: its BasicBlock applies a '
                'ReLU between the last BN and SE, unlike the paper and seplugin')
        cfg['stem_pool'] = 'ceil'  # Caffe's max pooling, kept by Cadene's port
    if 'stem.0.conv.weight' in state:  # mmpretrain's deep stem: three ConvModules
        widths = [state[f'stem.{i}.conv.weight'].shape[0] for i in (0, 1, 2)]
        if widths[0] != widths[1] or widths[1] * 2 != widths[2]:
            raise ConversionError(
                f'deep stem widths {widths} cannot be reproduced: mmdet\'s deep stem has '
                f'(c/2, c/2, c) (timm\'s "tiered" stems, e.g. seresnet50t, do not)')
        cfg.update(deep_stem=True, stem_channels=widths[2])
    if any(re.match(r'^layer\d\.0\.downsample\.2\.', k) for k in state):
        cfg['avg_down'] = True
    cfg.update(se_options(state))
    return cfg


def se_options(state: Mapping[str, torch.Tensor]) -> dict:
    """``se_ratio`` (and ``se_cfg``) that give every SE layer of ``state`` its width.

    The ratio is read where rounding matters least, at the widest SE layer; the rule is the
    simplest of ``SE_RULES`` that gives every layer its width (e.g. timm's multiples of 8).
    """
    from seplugin.models.layers.se_layer import squeeze_width
    widths = {}  # channels -> squeeze width, over all SE layers
    for key, value in state.items():
        if re.match(r'^layer\d+\.\d+\.se_layer\.conv1\.conv\.weight$', key):
            widths.setdefault(value.shape[1], set()).add(value.shape[0])
    if not widths:
        return {}
    if any(len(w) > 1 for w in widths.values()):
        raise ConversionError(f'SE layers of equal width squeeze differently: {widths}')
    widths = {c: w.pop() for c, w in widths.items()}
    widest = max(widths)
    ratio = widest / widths[widest]
    ratio = int(ratio) if ratio.is_integer() else ratio
    for rule in SE_RULES:
        if all(squeeze_width(c, ratio, **rule) == w for c, w in widths.items()):
            return dict(se_ratio=ratio, se_cfg=dict(rule))
    raise ConversionError(
        f'no squeeze-width rule gives these SE widths (channels: width) {widths} at ratio '
        f'{ratio}; tried se_cfg {[dict(r) for r in SE_RULES]}')


def _target(backbone_cfg: dict, num_classes: int | None) -> nn.Module:
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        backbone = MODELS.build(dict(backbone_cfg, out_indices=(3,)))
    if num_classes is None:
        return nn.ModuleDict(dict(backbone=backbone))
    head = nn.Module()
    head.fc = nn.Linear(backbone.feat_dim, num_classes)
    return nn.ModuleDict(dict(backbone=backbone, head=head))


def fill_num_batches_tracked(converted: dict[str, torch.Tensor],
                             expected: Mapping[str, torch.Tensor]) -> list[str]:
    """Add the ``num_batches_tracked`` counters a pre-0.4.1 file lacks, as torch does.

    ``torch.nn.modules.batchnorm._NormBase._load_from_state_dict`` puts
    ``torch.tensor(0, dtype=torch.long)`` (a fresh module's count) in place of an absent
    counter; the counter only matters for BN with ``momentum=None``. Returns the added keys.
    """
    added = []
    for key, value in expected.items():
        if key.endswith('.num_batches_tracked') and key not in converted \
                and key.removesuffix('num_batches_tracked') + 'running_mean' in converted:
            converted[key] = torch.tensor(0, dtype=value.dtype)
            added.append(key)
    return added


def convert(checkpoint: Mapping, source: str, backbone_only: bool = False,
            notes: list[str] | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Convert a checkpoint's content; returns (state dict, backbone config).

    The state dict has mmpretrain's classifier layout (``backbone.*``, ``head.fc.*``), or
    the bare backbone keys with ``backbone_only``. The backbone config is the one that takes
    it (with ``se_cfg`` when the SE widths need it). ``notes``, if given, receives what was
    added (missing ``num_batches_tracked``) or started neutral. Raises
    :class:`ConversionError` counting and naming unmatched keys and shape mismatches.
    """
    original = unwrap(checkpoint)
    state = rename(original, source)
    head = {k: v for k, v in state.items() if k.startswith('head.')}
    trunk = {k: v for k, v in state.items() if not k.startswith('head.')}
    try:
        cfg = infer_backbone(trunk, source)
    except ConversionError as e:
        raise ConversionError(f'{source} checkpoint: {e}{_hint(original, source)}') from e
    num_classes = None if backbone_only or not head else head['head.fc.weight'].shape[0]
    model = _target(cfg, num_classes)
    converted = {f'backbone.{k}': v for k, v in trunk.items()}
    if num_classes is not None:
        converted.update(head)
    expected = model.state_dict()
    filled = fill_num_batches_tracked(converted, expected)
    unmatched = sorted(set(converted) - set(expected))
    wrong = [f'{k} {tuple(v.shape)} (model: {tuple(expected[k].shape)})'
             for k, v in converted.items() if k in expected and v.shape != expected[k].shape]
    empty = sorted(set(expected) - set(converted))
    # a plain ResNet has no SE layers: they are the only places allowed to stay empty
    se_missing = [k for k in empty if '.se_layer.' in k] if source == 'torchvision' else []
    empty = [k for k in empty if k not in se_missing]
    problems = [f'{len(keys)} {what}: {_some(keys)}' for keys, what in (
        (empty, 'keys of the model are not in the source'),
        (unmatched, 'keys of the source have no place in the model'),
        (wrong, 'tensors have another shape than in the model')) if keys]
    if problems:
        raise ConversionError(f'{source} checkpoint ({len(original)} tensors) does not '
                              f'convert to {cfg}:\n  ' + '\n  '.join(problems)
                              + _hint(original, source))
    # a plain ResNet: loading it starts the SE layers as no-ops (SEResNet's load hook)
    model.load_state_dict(converted, strict=not se_missing)
    if notes is not None and filled:
        notes.append(f'{len(filled)} BN layers had no num_batches_tracked (a file saved '
                     'before PyTorch 0.4.1): set to 0, as torch\'s BatchNorm loading does')
    if se_missing:
        converted = model.state_dict()
        if notes is not None:
            notes.append(f'{len(se_missing) // 4} SE layers are not in the source (a plain '
                         'ResNet): they start neutral')
    if backbone_only:
        converted = {k.removeprefix('backbone.'): v for k, v in converted.items()}
    return converted, cfg


def _hint(original: Mapping[str, torch.Tensor], source: str) -> str:
    """A closing line naming the source that the keys look like, when it is another."""
    guess = guess_source(original)
    if guess is None or guess.split()[0] == source or (
            source in ('cadene', 'timm-legacy') and guess.startswith('cadene')):
        return ''
    return f'\nits keys look like --source {guess}'
