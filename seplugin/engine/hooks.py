"""Runner hooks of seplugin."""
import random

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import IterBasedTrainLoop


def step_seed(seed: int, step: int, rank: int | None = None) -> int:
    """A 32-bit seed for training step ``step`` of a run seeded with ``seed``."""
    entropy = [seed % 2**63, step] + ([] if rank is None else [rank])
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def seed_all(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and all GPUs) global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


class _ReseedAfterSkip:
    """Wraps the iterator of an ``IterBasedTrainLoop`` that resumes at iteration ``skip``:
    the loop first fetches ``skip`` batches to move the sampler on (running their
    transforms, which draw random numbers). After those, the generators are reseeded for
    step ``skip``, and the loop gets its own iterator back."""

    def __init__(self, loop, skip: int, reseed) -> None:
        self.loop, self.inner, self.left, self.reseed = loop, loop.dataloader_iterator, skip, \
            reseed

    def __iter__(self):
        return self

    def __next__(self):
        if self.left == 0:
            self.reseed()
            self.loop.dataloader_iterator = self.inner
            return next(self.inner)
        self.left -= 1
        return next(self.inner)


@HOOKS.register_module()
class ResumableRandomnessHook(Hook):
    """Makes a resumed training draw the same random numbers as an uninterrupted one.

    mmengine checkpoints hold the weights, optimizer, schedulers and the seed, but not the
    state of the random generators: on ``--resume`` the Runner seeds them afresh, so the
    augmentations (and RoI samplers, dropout, ...) after the resume point differ from those
    of an uninterrupted run, and so do the final weights. Saving the generators' state
    would not be enough either, as validation, the creation of data loader iterators and
    the Runner's skipping of already-trained batches draw from them too.

    This hook instead makes the state at each training step a function of the run's seed
    and the step: before the data of step ``i`` is loaded, Python's, NumPy's and torch's
    global generators are seeded with a hash of ``(seed, i)`` (and the rank, when
    ``randomness.diff_rank_seed`` is set). A run resumed at step ``k`` therefore continues
    with exactly the random numbers the uninterrupted run used from step ``k`` on; with
    ``randomness=dict(seed=..., deterministic=True)`` the weights end bit-identical (tested
    on the CPU with ``num_workers=0``; data loader workers seed themselves, by
    ``worker_init_fn``). Epoch-based training resumes at epoch ends, iteration-based at any
    checkpoint.

    ``tools/train.py`` adds the hook when the config sets ``randomness.deterministic``;
    elsewhere add ``dict(type='ResumableRandomnessHook')`` to ``custom_hooks``.
    """

    priority = 'LOWEST'  # after every other hook that may draw random numbers

    def _reseed(self, runner, step: int) -> None:
        diff_rank = runner._randomness_cfg.get('diff_rank_seed', False)
        seed_all(step_seed(runner.seed, step, get_rank() if diff_rank else None))

    def before_train_epoch(self, runner) -> None:
        loop = runner.train_loop
        if isinstance(loop, IterBasedTrainLoop) and runner.iter > 0:
            # Resumed: the loop fetches runner.iter batches to skip before the next one.
            step = runner.iter
            loop.dataloader_iterator = _ReseedAfterSkip(
                loop, step, lambda: self._reseed(runner, step))
        else:
            self._reseed(runner, runner.iter)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        # runner.iter counts this step only after the after_train_iter hooks
        self._reseed(runner, runner.iter + 1)

    def after_val(self, runner) -> None:
        # Validation during training draws random numbers (its data loader does) that a
        # resumed run does not draw: the next training step starts from its own seed.
        if runner._train_loop is not None and not isinstance(runner._train_loop, dict):
            self._reseed(runner, runner.iter)
