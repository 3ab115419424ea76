"""What a user's config sees: custom_imports=['seplugin'] makes the SE names resolve."""
import subprocess
import sys
import textwrap

import pytest

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
