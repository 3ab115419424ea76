"""The scripts of tools/ loaded and run in this process, and a one-epoch run of the mini
classifier for them: what the tests of the tools share."""
import importlib.util
import sys
import uuid
from pathlib import Path
from unittest import mock

import torch

REPO = Path(__file__).parents[1]
CLS = REPO / 'configs/mini/seresnet18_mini_imagenet.py'
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def load_tool(name: str):
    """tools/<name>.py as a module (its ``__main__`` block does not run)."""
    spec = importlib.util.spec_from_file_location(f'tool_{name}', REPO / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tool(name: str, *args) -> None:
    """tools/<name>.py's main() in this process, with these arguments: what a subprocess
    would run, minus the start-up time."""
    module = load_tool(name)
    with mock.patch.object(sys, 'argv', [name, *map(str, args)]):
        module.main()


def mini_options(data: Path, *extra: str) -> list[str]:
    """--cfg-options for a one-epoch run of the mini classifier (``CLS``) on ``data``.

    Each run gets its own experiment name: runs of this process in the same second would
    share mmengine's logger and visualizer otherwise."""
    return ['--cfg-options', *(f'{loader}.dataset.data_root={data}' for loader in LOADERS),
            'train_cfg.max_epochs=1', 'train_dataloader.batch_size=8',
            f'experiment_name={uuid.uuid4().hex}', *extra]


def save_mini_classifier(path: Path) -> Path:
    """A checkpoint of the mini classifier's model (its initial weights) at ``path``."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(Config.fromfile(str(CLS)).model)
    torch.save({'state_dict': model.state_dict()}, path)
    return path
