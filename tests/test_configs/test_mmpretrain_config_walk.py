"""Every config shipped with the installed MMPretrain whose backbone is a ResNet, ResNetV1c,
ResNetV1d, SEResNet or SEResNeXt: seplugin's mmpretrain-scope class (plain ResNets switched
to SEResNet) builds from it, loads the weights of MMPretrain's own backbone built from the
same config, and gives the same outputs.

SE configs load strictly. Plain ResNet configs load with only the SE keys missing: their SE
layers start neutral (the load hook), so the SE network computes MMPretrain's ResNet.

The full walk is slow (it parses every config): ``pytest -m slow
tests/test_configs/test_mmpretrain_config_walk.py -s``; the default run checks a few
representative configs.
"""
import copy
import json
from pathlib import Path

import mmpretrain
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.models import backbones as upstream
from mmpretrain.models.backbones.resnet import get_expansion
from mmpretrain.registry import MODELS
from toy import randomise_norms

from seplugin.models import MMPretrainSEResNet, MMPretrainSEResNeXt

CONFIG_ROOT = Path(mmpretrain.__file__).parent / '.mim' / 'configs'
UPSTREAM = {name: getattr(upstream, name)
            for name in ('ResNet', 'ResNetV1c', 'ResNetV1d', 'SEResNet', 'SEResNeXt')}
# plain ResNets become seplugin's SEResNet with the stem and shortcut their class sets
SWITCH = {'ResNet': {}, 'ResNetV1c': dict(deep_stem=True, avg_down=False),
          'ResNetV1d': dict(deep_stem=True, avg_down=True)}
# one config per kind: BasicBlock, deep stem with avg_down, SE, SE-ResNeXt
FAST = ('resnet/resnet18_8xb32_in1k.py', 'resnet/resnetv1d50_8xb32_in1k.py',
        'seresnet/seresnet50_8xb32_in1k.py', 'seresnet/seresnext50-32x4d_8xb32_in1k.py')


def find_backbones(node, where='model'):
    """(where, dict) of every ResNet-family dict inside a model config, at any depth."""
    if isinstance(node, dict):
        kind = node.get('type')
        if isinstance(kind, str) and kind.split('.')[-1] in UPSTREAM:
            yield where, node
        for key, value in node.items():
            yield from find_backbones(value, f'{where}.{key}')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from find_backbones(value, f'{where}[{i}]')


def backbones_of(paths):
    """{canonical backbone dict: [config:where, ...]} of the configs at ``paths``, and the
    configs that do not parse (upstream's own breakage)."""
    found, broken = {}, {}
    for path in paths:
        try:
            cfg = Config.fromfile(str(path))
        except Exception as error:  # noqa: BLE001  (reported and checked by the caller)
            broken[path] = error
            continue
        for where, backbone in find_backbones(cfg.to_dict().get('model')):
            key = json.dumps(backbone, sort_keys=True)
            found.setdefault(key, []).append(f'{path.relative_to(CONFIG_ROOT)}:{where}')
    return found, broken


def check_backbone(cfg: dict) -> str:
    """Build MMPretrain's backbone and seplugin's from ``cfg``, load, compare outputs.
    Returns 'se', 'plain' or 'refused' (an option seplugin refuses, with its error)."""
    cfg = copy.deepcopy(cfg)
    kind = cfg.pop('type').split('.')[-1]
    torch.manual_seed(0)
    ref = UPSTREAM[kind](**cfg)  # MMPretrain's own class, not the registry's name
    randomise_norms(ref)
    ours_cfg = dict(cfg, type=kind) if kind not in SWITCH else \
        dict(cfg, type='SEResNet', **SWITCH[kind])
    if ref.expansion != get_expansion(ref.block):
        # mmdet's blocks have a fixed expansion (wide ResNets change it): refused clearly
        with pytest.raises(ValueError, match=r'expansion \d+ does not match depth'):
            build_ours(ours_cfg)
        return 'refused'
    ours = build_ours(ours_cfg)
    assert type(ours) is (MMPretrainSEResNeXt if kind == 'SEResNeXt' else MMPretrainSEResNet)
    keys = ours.load_state_dict(ref.state_dict(), strict=kind not in SWITCH)
    if kind in SWITCH:
        assert not keys.unexpected_keys
        assert keys.missing_keys and all('.se_layer.' in k for k in keys.missing_keys)
    ref.eval()
    ours.eval()
    x = torch.randn(1, cfg.get('in_channels', 3), 64, 64)
    with torch.no_grad():
        expected, actual = ref(x), ours(x)
    assert len(actual) == len(expected)
    for a, b in zip(actual, expected):
        torch.testing.assert_close(a, b)
    return 'plain' if kind in SWITCH else 'se'


def build_ours(cfg: dict):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(cfg)


@pytest.mark.parametrize('config', FAST)
def test_representative_configs(config):
    found, broken = backbones_of([CONFIG_ROOT / config])
    assert not broken and len(found) == 1
    kind = 'se' if 'seresne' in config else 'plain'
    assert check_backbone(json.loads(next(iter(found)))) == kind


@pytest.mark.slow
def test_every_mmpretrain_config():
    paths = sorted(p for p in CONFIG_ROOT.rglob('*.py') if '_base_' not in p.parts)
    found, broken = backbones_of(paths)
    # configs MMPretrain itself cannot parse must not be ResNet-family configs we skip
    for path in broken:
        assert not any(f"'{kind}'" in path.read_text() for kind in UPSTREAM), path
    outcomes, failures = {}, {}
    for key, users in found.items():
        try:
            outcomes[key] = check_backbone(json.loads(key))
        except Exception as error:  # noqa: BLE001  (collected, the test fails below)
            failures[users[0]] = f'{type(error).__name__}: {error}'[:500]
    counts = {kind: sum(v == kind for v in outcomes.values()) for kind in ('se', 'plain',
                                                                           'refused')}
    print(f'\n{len(paths)} configs ({len(broken)} that MMPretrain cannot parse), '
          f'{sum(map(len, found.values()))} ResNet-family backbones, {len(found)} distinct: '
          f'{counts["se"]} SE (strict load), {counts["plain"]} plain (SE neutral), '
          f'{counts["refused"]} refused (expansion != 4)')
    for key, kind in outcomes.items():
        if kind == 'refused':
            print(f'  refused: {found[key]}')
    assert not failures, '\n'.join(f'{k}: {v}' for k, v in failures.items())
    assert counts['se'] >= 4 and counts['plain'] >= 20
