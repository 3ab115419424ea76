import warnings

import pytest
import torch

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')

import seplugin  # noqa: E402,F401  (registers modules for every test)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
