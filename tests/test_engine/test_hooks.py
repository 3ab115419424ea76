"""ResumableRandomnessHook: a resumed run draws the random numbers of an uninterrupted one."""

import numpy as np
import pytest
import torch
from mmengine.runner import Runner
from toy import ToyData, ToyModel, make_runner

from seplugin.checkpoint import load_file
from seplugin.engine.hooks import step_seed


class NoisyData(ToyData):
    """ToyData with a NumPy-random augmentation, as image transforms have."""

    def __getitem__(self, i):
        item = super().__getitem__(i)
        noise = np.random.uniform(-0.5, 0.5, size=item['inputs'].shape).astype(np.float32)
        return dict(item, inputs=item['inputs'] + torch.from_numpy(noise))


class DropoutModel(ToyModel):
    """ToyModel with dropout: torch's generator in the forward pass."""

    def forward(self, inputs, labels, mode='tensor'):
        inputs = [torch.nn.functional.dropout(x, 0.5, self.training) for x in inputs]
        return super().forward(inputs, labels, mode)


def noisy_runner(work_dir, max_iters, hook: bool, **kwargs) -> Runner:
    """toy.make_runner's run with random augmentation, dropout and validation."""
    # InfiniteSampler: mmengine sleeps 2 s at each restart of a finite one
    return make_runner(
        work_dir, max_iters, val_interval=3, model=DropoutModel(), dataset=NoisyData(),
        sampler='InfiniteSampler',
        custom_hooks=[dict(type='ResumableRandomnessHook')] if hook else [],
        default_scope=None, **kwargs)  # no global scope left behind


@pytest.mark.parametrize('hook', [True, False])
def test_resumed_iteration_run_matches_uninterrupted(tmp_path, hook):
    """Resumed at step 4 of 6, with validation after step 3 and 6 in between. Without the
    hook the runs part (the control: the test can tell them apart)."""
    noisy_runner(tmp_path / 'straight', 6, hook).train()
    noisy_runner(tmp_path / 'resumed', 6, hook, resume=True,
                 load_from=str(tmp_path / 'straight' / 'iter_4.pth')).train()
    ours = load_file(str(tmp_path / 'resumed' / 'iter_6.pth'))['state_dict']
    theirs = load_file(str(tmp_path / 'straight' / 'iter_6.pth'))['state_dict']
    same = all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert same is hook


def test_step_seeds_differ_by_step_seed_and_rank():
    seeds = {step_seed(s, i, r) for s in (0, 1) for i in range(50) for r in (0, 1, 2)}
    assert len(seeds) == 2 * 50 * 3
    assert all(0 <= s < 2**32 for s in seeds)
    assert step_seed(0, 7) == step_seed(0, 7)
    # rank 0 of diff_rank_seed is the shared seed, as mmengine's seed + rank is
    assert step_seed(3, 7, 0) == step_seed(3, 7)
