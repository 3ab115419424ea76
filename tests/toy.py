"""A tiny model, dataset and metric for real mmengine Runner runs in a second or two."""
import os
import subprocess
import sys
import uuid
from contextlib import contextmanager

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import Dataset

from seplugin.models import SELayer
from seplugin.models.backbones import se_block


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
    """Reports 'accuracy/top1' and 'accuracy/top5' in percent, like mmpretrain."""
    default_prefix = 'accuracy'

    def process(self, data_batch, data_samples):
        self.results.extend((s['pred'] == s['gt']).tolist() for s in data_samples)

    def compute_metrics(self, results):
        top1 = 100 * float(np.mean([x for r in results for x in r]))
        return dict(top1=top1, top5=100.0)


def make_runner(work_dir, max_iters, seed=0, val_interval=None, runner_cls=Runner, model=None,
                dataset=None, sampler='DefaultSampler', **kwargs):
    """A Runner of ``model`` (a ToyModel) on ``dataset`` (ToyData), checkpointing every second
    iteration; with ``val_interval``, validating that often on the test loader's data.
    ``kwargs``: the Runner's other arguments, over these."""
    loader = dict(dataset=ToyData() if dataset is None else dataset,
                  sampler=dict(type=sampler, shuffle=True), batch_size=4, num_workers=0)
    in_order = dict(loader, sampler=dict(type='DefaultSampler', shuffle=False))
    settings = dict(
        model=ToyModel() if model is None else model, work_dir=str(work_dir),
        train_dataloader=loader,
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', by_epoch=False, milestones=[2]),
        train_cfg=dict(by_epoch=False, max_iters=max_iters, val_interval=val_interval or 1000),
        test_dataloader=in_order, test_evaluator=ToyAccuracy(), test_cfg=dict(),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1,
                                       log_metric_by_epoch=False)),
        randomness=dict(seed=seed), default_scope='mmengine',
        # unique: runners of one process and one second would share a visualizer otherwise
        experiment_name=uuid.uuid4().hex)
    if val_interval:
        settings.update(val_dataloader=in_order, val_evaluator=[ToyAccuracy()], val_cfg=dict())
    return runner_cls(**{**settings, **kwargs})


def randomise_norms(model: nn.Module, shift: float = 0.1,
                    scale: tuple[float, float] = (0.5, 1.5)) -> nn.Module:
    """Every BN, GN and LN affine and BN running statistic away from 1/0, so that each
    counts in the outputs (no zero-initialised branch) and a wrong gate cannot hide; convs
    keep their initialisation. Weights and running variances are uniform in ``scale``,
    biases and running means normal with standard deviation ``shift``. The one copy of this
    helper: tests import it from here."""
    for m in model.modules():
        if isinstance(m, (_BatchNorm, nn.GroupNorm, nn.LayerNorm)):
            if m.weight is not None:
                m.weight.data.uniform_(*scale)
            if m.bias is not None:
                m.bias.data.normal_(0, shift)
        if isinstance(m, _BatchNorm) and m.running_mean is not None:
            m.running_mean.normal_(0, shift)
            m.running_var.uniform_(*scale)
    return model


@contextmanager
def lean_calls():
    """Counts the fast SE tail's calls inside the context, each named by its form ('lean',
    'fused' or 'formula'; the plain path makes none)."""
    calls = []
    names = {'batch_norm_affine': 'lean', 'fused_tail': 'fused',
             'fused_tail_formula': 'formula'}
    originals = {name: getattr(se_block, name) for name in names}

    def counter(name):
        def counted(*args):
            calls.append(names[name])
            return originals[name](*args)
        return counted
    for name in names:
        setattr(se_block, name, counter(name))
    try:
        yield calls
    finally:
        for name, original in originals.items():
            setattr(se_block, name, original)


# A tiny SE-ResNet-18 in training mode and grads(): its parameters' gradients of one step
TINY_SE_RESNET_STEP = """
import warnings, torch
from seplugin.models import SEResNet
torch.manual_seed(0)
model = SEResNet(18, norm_eval=False, base_channels=8, se_ratio=4).train()
image = torch.randn(2, 3, 32, 32)
def grads():
    model.zero_grad()
    sum(o.sum() for o in model(image)).backward()
    return [p.grad.clone() for p in model.parameters()]
"""


def without_a_compiler(tmp_path, code: str) -> str:
    """Runs ``TINY_SE_RESNET_STEP`` then ``code`` in a fresh interpreter with no C++
    compiler (CXX points nowhere) and empty inductor and extension caches, so that
    nothing seplugin compiles can be built or found; returns its standard output."""
    env = dict(os.environ, CXX=str(tmp_path / 'no-such-compiler'),
               TORCHINDUCTOR_CACHE_DIR=str(tmp_path / 'inductor'),
               TORCH_EXTENSIONS_DIR=str(tmp_path / 'extensions'))
    out = subprocess.run([sys.executable, '-c', TINY_SE_RESNET_STEP + code],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout
