"""Runner checkpoints load with weights_only=True: resume and test from what the runner wrote."""
import io
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from toy import make_runner


def test_resume_and_test_from_runner_checkpoint(tmp_path):
    first = make_runner(tmp_path, max_iters=2)
    first.train()
    ckpt = tmp_path / 'iter_2.pth'
    assert ckpt.exists()
    saved = torch.load(ckpt, weights_only=True)  # what mmengine does by default on torch>=2.6
    assert isinstance(saved['message_hub']['log_scalars']['train/loss'], HistoryBuffer)

    resumed = make_runner(tmp_path / 'resumed', max_iters=4, resume=True, load_from=str(ckpt))
    resumed.train()
    assert resumed.iter == 4
    # the scheduler counted on from the checkpoint's 2 steps, not from 0
    assert resumed.param_schedulers[0].state_dict()['_global_step'] == 4
    assert resumed.optim_wrapper.optimizer.state_dict()['state']  # momentum buffers exist
    assert len(resumed.message_hub.get_scalar('train/loss').data[0]) == 4  # 2 saved + 2 new

    tester = make_runner(tmp_path / 'test', max_iters=2, load_from=str(ckpt))
    metrics = tester.test()
    assert 0.0 <= metrics['accuracy/top1'] <= 100.0
    torch.testing.assert_close(tester.model.fc.weight, saved['state_dict']['fc.weight'])


def test_without_allow_list_torch_refuses_runner_checkpoints(tmp_path):
    """The break is real: a fresh interpreter without seplugin cannot load the file."""
    make_runner(tmp_path, max_iters=2).train()
    code = ('import torch, sys; torch.load(sys.argv[1], weights_only=True)')
    result = subprocess.run([sys.executable, '-c', code, str(tmp_path / 'iter_2.pth')],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert 'HistoryBuffer' in result.stderr or 'getattr' in result.stderr


def test_getattr_is_allowed_only_for_history_buffer_statistics():
    class Sneaky:
        def __reduce__(self):
            return getattr, (np.ndarray, 'tofile')

    buffer = io.BytesIO()
    torch.save(Sneaky(), buffer)
    buffer.seek(0)
    with pytest.raises(pickle.UnpicklingError,
                       match=r"getattr\(<class 'numpy.ndarray'>, 'tofile'\); only "
                             r"HistoryBuffer statistics \['current', 'max', 'mean', 'min'\]"):
        torch.load(buffer, weights_only=True)


def test_arbitrary_globals_stay_rejected():
    class Evil:
        def __reduce__(self):
            return subprocess.call, (['true'],)

    buffer = io.BytesIO()
    torch.save(Evil(), buffer)
    buffer.seek(0)
    with pytest.raises(pickle.UnpicklingError, match=r'Unsupported global: GLOBAL \S+\.call'):
        torch.load(buffer, weights_only=True)
