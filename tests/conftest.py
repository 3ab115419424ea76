import warnings

import pytest
import torch

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')

import seplugin  # noqa: E402,F401  (registers modules for every test)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _default_scope_per_test():
    """mmengine's current default scope is the newest DefaultScope ever made (a runner makes
    one per run), and registries resolve names in it: restore it after each test, so that a
    test's scope (an mmpretrain runner, say) never decides what another test builds."""
    from mmengine.registry import DefaultScope
    before = dict(DefaultScope._instance_dict)
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(before)
