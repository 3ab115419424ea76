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

Every conversion builds the target model and checks each key and shape; any key of the
source that finds no place, or any place of the target left empty (except SE layers for a
plain source), is an error listing all of them: nothing is dropped silently.
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
    if 'stem.0.conv.weight' in state:
        cfg.update(deep_stem=True, stem_channels=state['stem.2.conv.weight'].shape[0])
    if any(re.match(r'^layer\d\.0\.downsample\.2\.', k) for k in state):
        cfg['avg_down'] = True
    se_key = 'layer1.0.se_layer.conv1.conv.weight'
    if se_key in state:  # one ratio for all layers; other stages are checked against it
        squeeze, channels = state[se_key].shape[:2]
        ratio = channels / squeeze
        cfg['se_ratio'] = int(ratio) if ratio.is_integer() else ratio
    return cfg


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


def convert(checkpoint: Mapping, source: str,
            backbone_only: bool = False) -> tuple[dict[str, torch.Tensor], dict]:
    """Convert a checkpoint's content; returns (state dict, backbone config).

    The state dict has mmpretrain's classifier layout (``backbone.*``, ``head.fc.*``), or
    the bare backbone keys with ``backbone_only``. Raises :class:`ConversionError` naming
    every unmatched key and every shape mismatch.
    """
    state = rename(unwrap(checkpoint), source)
    head = {k: v for k, v in state.items() if k.startswith('head.')}
    trunk = {k: v for k, v in state.items() if not k.startswith('head.')}
    cfg = infer_backbone(trunk, source)
    num_classes = None if backbone_only or not head else head['head.fc.weight'].shape[0]
    model = _target(cfg, num_classes)
    converted = {f'backbone.{k}': v for k, v in trunk.items()}
    if num_classes is not None:
        converted.update(head)
    expected = model.state_dict()
    unmatched = sorted(set(converted) - set(expected))
    wrong = [f'{k}: {tuple(v.shape)} in the source, {tuple(expected[k].shape)} in the model'
             for k, v in converted.items() if k in expected and v.shape != expected[k].shape]
    empty = sorted(set(expected) - set(converted))
    # a plain ResNet has no SE layers: they are the only places allowed to stay empty
    se_missing = [k for k in empty if '.se_layer.' in k] if source == 'torchvision' else []
    problems = ([f'no place in the model for: {k}' for k in unmatched] + wrong
                + [f'not in the source: {k}' for k in empty if k not in se_missing])
    if problems:
        raise ConversionError(f'{source} checkpoint does not convert to {cfg}:\n  '
                              + '\n  '.join(problems))
    # a plain ResNet: loading it starts the SE layers as no-ops (SEResNet's load hook)
    model.load_state_dict(converted, strict=not se_missing)
    if se_missing:
        converted = model.state_dict()
    if backbone_only:
        converted = {k.removeprefix('backbone.'): v for k, v in converted.items()}
    return converted, cfg
