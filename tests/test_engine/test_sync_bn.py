"""SyncBN in SE-ResNet: built from norm_cfg, turned back into BN for single-process runs,
and refused with a clear error for distributed runs on the CPU (the 2-process run of that
is in tests/test_tools/test_distributed.py)."""
import pytest
import torch
from mmengine.model import revert_sync_batchnorm

from seplugin.engine.dist import check_sync_bn
from seplugin.models import SEResNet


def test_se_resnet_with_sync_bn_runs_as_bn_in_one_process():
    sync = SEResNet(depth=18, base_channels=16, se_ratio=4, norm_cfg=dict(type='SyncBN'))
    bns = [m for m in sync.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert bns and all(isinstance(m, torch.nn.SyncBatchNorm) for m in bns)
    plain = SEResNet(depth=18, base_channels=16, se_ratio=4)
    plain.load_state_dict(sync.state_dict())  # same parameters and buffers, key for key

    reverted = revert_sync_batchnorm(sync)  # what mmengine's Runner does without a launcher
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in reverted.modules())
    # float64: mmengine's reverted BN is not torch.nn.BatchNorm2d, so that model takes the
    # plain SE tail and the other the lean one, which round differently in float32
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    for a, b in zip(reverted.double()(x), plain.double()(x)):
        torch.testing.assert_close(a, b)


def test_check_sync_bn_only_acts_in_distributed_cpu_runs(monkeypatch):
    model = SEResNet(depth=18, base_channels=16, se_ratio=4, norm_cfg=dict(type='SyncBN'))
    check_sync_bn(model, 'gloo')  # not distributed: nothing to check
    monkeypatch.setattr('seplugin.engine.dist.is_distributed', lambda: True)
    with pytest.raises(RuntimeError, match=r'the model has SyncBN layers \(bn1, '
                                           r'layer1.0.bn1, layer1.0.bn2 and \d+ more\), which '
                                           r"synchronise through GPU kernels only, but this "
                                           r"distributed run is on the CPU \(backend 'gloo'\)"):
        check_sync_bn(model, 'gloo')
    plain = SEResNet(depth=18, base_channels=16, se_ratio=4)
    check_sync_bn(plain, 'gloo')
    with pytest.raises(RuntimeError, match=r"the config's sync_bn='torch' turns the model's BN "
                                           r'layers into SyncBN'):
        check_sync_bn(plain, 'gloo', sync_bn='torch')
    monkeypatch.setattr('mmengine.device.get_device', lambda: 'cuda')
    check_sync_bn(model, 'nccl')  # GPUs: SyncBN's home
