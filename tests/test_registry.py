"""What a user's config sees: custom_imports=['seplugin'] makes the SE names resolve, with
MMDetection and MMPretrain, or with only one of them installed."""
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]

BUILD = textwrap.dedent('''
    import sys
    from mmengine import Config
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(sys.argv[1])
    init_default_scope(cfg.default_scope)
    for cfg_model in cfg.models:
        model = MODELS.build(cfg_model)
        print(type(model).__module__ + '.' + type(model).__name__)
''')


@pytest.mark.parametrize('scope', ['mmdet', 'mmpretrain'])
def test_custom_imports_register_seplugin_in_a_fresh_process(tmp_path, scope):
    config = tmp_path / 'cfg.py'
    config.write_text(textwrap.dedent(f'''
        custom_imports = dict(imports=['seplugin'], allow_failed_imports=False)
        default_scope = '{scope}'
        models = [dict(type='SEResNet', depth=18, base_channels=16, se_ratio=4),
                  dict(type='SEResNeXt', depth=50, base_channels=16, groups=4, se_ratio=4),
                  dict(type='SELayer', in_channels=16, ratio=4),
                  dict(type='seplugin.SEResNet', depth=18, base_channels=16, se_ratio=4)]
    '''))
    result = subprocess.run([sys.executable, '-c', BUILD, str(config)], capture_output=True,
                            text=True, check=True)
    # the mmpretrain scope gets the subclasses with MMPretrain's defaults and key layout
    flavour = ('se_resnet.SEResNet', 'se_resnext.SEResNeXt') if scope == 'mmdet' else \
        ('mmpretrain_se_resnet.MMPretrainSEResNet', 'mmpretrain_se_resnet.MMPretrainSEResNeXt')
    assert result.stdout.split() == [
        f'seplugin.models.backbones.{flavour[0]}',
        f'seplugin.models.backbones.{flavour[1]}',
        'seplugin.models.layers.se_layer.SELayer',
        'seplugin.models.backbones.se_resnet.SEResNet',
    ]


def run_without(package: str, code: str, tmp_path) -> subprocess.CompletedProcess:
    """Run ``code`` in a Python whose site-packages lack ``package``, as if it had never
    been installed: a folder of links to every entry of this environment's site-packages
    but that package's, in place of site-packages (``python -S``)."""
    import mmengine
    site_packages = Path(mmengine.__file__).parents[1]
    farm = tmp_path / 'site-packages'
    farm.mkdir()
    for entry in site_packages.iterdir():
        if re.split(r'[-.]', entry.name)[0] != package:
            (farm / entry.name).symlink_to(entry)
    script = (f'import site, sys; site.addsitedir({str(farm)!r}); '
              f'sys.path.insert(0, {str(REPO)!r})\n' + textwrap.dedent(code))
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    # Torch's include paths through the links differ from the real ones, so the fused tail's
    # kernels would be built again (a minute) and the shared cache's build file rewritten,
    # which makes the next process build once more. Registration is the subject here.
    env['SEPLUGIN_FUSED_TAIL'] = '0'
    return subprocess.run([sys.executable, '-S', '-c', script], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=300)


def test_with_only_mmpretrain(tmp_path):
    """seplugin's layer, dataset and hook register into MMPretrain's registries; SEResNet,
    SEResNeXt and SEFPN are MMDetection's ResNet, ResNeXt and FPN with SE, so without
    MMDetection the mmpretrain scope keeps MMPretrain's own SEResNet, and seplugin's name
    says what is missing."""
    result = run_without('mmdet', '''
        import importlib.util
        assert importlib.util.find_spec('mmdet') is None  # really not there
        import torch
        import seplugin
        from mmengine.registry import DefaultScope
        from mmpretrain.registry import DATASETS, MODELS
        import mmpretrain.models
        assert 'mmdet' not in sys.modules
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            layer = MODELS.build(dict(type='SELayer', in_channels=16, ratio=4))
            print(type(layer).__module__, tuple(layer(torch.ones(2, 16, 3, 3)).shape))
            print(MODELS.get('SEResNet') is mmpretrain.models.SEResNet)
            print(DATASETS.get('Places365').__module__)
            try:
                MODELS.build(dict(type='seplugin.SEResNet', depth=18))
            except ImportError as e:
                print(e)
    ''', tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == [
        'seplugin.models.layers.se_layer (2, 16, 3, 3)',
        'True',
        'seplugin.datasets.places365',
        'seplugin.SEResNet needs mmdet, which is not installed (pip install mmdet)',
    ]


def test_with_only_mmdet(tmp_path):
    result = run_without('mmpretrain', '''
        import importlib.util
        assert importlib.util.find_spec('mmpretrain') is None
        import torch
        import seplugin
        from mmengine.registry import DefaultScope
        from mmdet.registry import DATASETS, MODELS
        assert 'mmpretrain' not in sys.modules
        with DefaultScope.overwrite_default_scope('mmdet'):
            model = MODELS.build(dict(type='SEResNet', depth=18, base_channels=16)).eval()
            print(type(model).__module__,
                  [tuple(f.shape) for f in model(torch.ones(1, 3, 32, 32))])
            print(type(MODELS.build(dict(type='SEFPN', in_channels=[16, 32], out_channels=16,
                                         se_ratio=4, num_outs=2))).__name__)
            print(DATASETS.get('CheckedCocoDataset').__module__)
            try:
                DATASETS.build(dict(type='seplugin.Places365', data_root='x'))
            except ImportError as e:
                print(e)
    ''', tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == [
        'seplugin.models.backbones.se_resnet '
        '[(1, 16, 8, 8), (1, 32, 4, 4), (1, 64, 2, 2), (1, 128, 1, 1)]',
        'SEFPN',
        'seplugin.datasets.coco',
        'seplugin.Places365 needs mmpretrain, which is not installed (pip install mmpretrain)',
    ]
