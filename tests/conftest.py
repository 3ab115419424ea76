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
    """Each test starts with no default scope: mmengine's current scope is the newest
    DefaultScope ever made (a runner makes one per run) and registries resolve names in it,
    so a scope left by one test (an mmpretrain or mmengine runner) decided what later tests
    built. Tests that need a scope set it; the session's own is put back afterwards."""
    from mmengine.registry import DefaultScope
    before = dict(DefaultScope._instance_dict)
    DefaultScope._instance_dict.clear()
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(before)
