"""Runner checkpoints load with weights_only=True: resume and test from what the runner wrote."""
import io
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from seplugin.models import SELayer


class ToyData(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(inputs=torch.randn(4, 6, 6, generator=g), labels=torch.tensor(i % 2))


class ToyModel(BaseModel):
    def __init__(self):
        super().__init__()
        self.se = SELayer(4, ratio=2)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, inputs, labels, mode='tensor'):
        logits = self.fc(self.se(torch.stack(inputs)).mean((2, 3)))
        labels = torch.stack(labels)
        if mode == 'loss':
            return dict(loss=torch.nn.functional.cross_entropy(logits, labels))
        return [dict(pred=logits.argmax(1), gt=labels)]


class ToyAccuracy(BaseMetric):
    def process(self, data_batch, data_samples):
        self.results.extend((s['pred'] == s['gt']).tolist() for s in data_samples)

    def compute_metrics(self, results):
        flat = [x for r in results for x in r]
        return dict(accuracy=float(np.mean(flat)))


def make_runner(work_dir, max_iters, **kwargs):
    loader = dict(dataset=ToyData(), sampler=dict(type='DefaultSampler', shuffle=True),
                  batch_size=4, num_workers=0)
    return Runner(
        model=ToyModel(), work_dir=str(work_dir), train_dataloader=loader,
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', by_epoch=False, milestones=[2]),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        test_dataloader=dict(loader, sampler=dict(type='DefaultSampler', shuffle=False)),
        test_evaluator=ToyAccuracy(), test_cfg=dict(),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0), default_scope='mmengine', **kwargs)


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
    assert 0.0 <= metrics['accuracy'] <= 1.0
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
