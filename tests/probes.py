"""Hooks that tests load into real training runs (``custom_imports=dict(imports=['probes'])``
with ``tests/`` on ``PYTHONPATH``).

``RankProbeHook`` watches each rank: per rank ``r`` it writes into ``out_dir``:

- ``rank{r}_steps.txt``: after every training step, the step and a SHA-256 of the bytes
  of every parameter of the model, in order;
- ``rank{r}_writes.txt``: every file this process wrote through mmengine's local file
  backend (checkpoints go through it);
- ``rank{r}_final.pt``: the parameters at the end of training.

It draws no random numbers, so it changes nothing in the run it watches.

``KillHook`` kills its own process with SIGKILL after a given training step: no cleanup,
no exception handlers, as when a machine or a scheduler kills a job.
"""
import hashlib
import os
import os.path as osp
import signal

import torch
from mmengine.dist import get_rank
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


def parameter_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, param in model.named_parameters():
        digest.update(name.encode())
        digest.update(param.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@HOOKS.register_module()
class RankProbeHook(Hook):
    priority = 'LOWEST'

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def _file(self, kind: str) -> str:
        return osp.join(self.out_dir, f'rank{get_rank()}_{kind}')

    def _model(self, runner) -> torch.nn.Module:
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def before_run(self, runner) -> None:
        writes = self._file('writes.txt')
        original_put, original_put_text = LocalBackend.put, LocalBackend.put_text

        def put(backend, obj, filepath):
            with open(writes, 'a') as f:
                f.write(f'{filepath}\n')
            return original_put(backend, obj, filepath)

        def put_text(backend, obj, filepath, encoding='utf-8'):
            with open(writes, 'a') as f:
                f.write(f'{filepath}\n')
            return original_put_text(backend, obj, filepath, encoding)

        LocalBackend.put, LocalBackend.put_text = put, put_text
        open(writes, 'a').close()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        with open(self._file('steps.txt'), 'a') as f:
            f.write(f'{runner.iter + 1} {parameter_digest(self._model(runner))}\n')

    def after_train(self, runner) -> None:
        torch.save({k: v.detach().cpu() for k, v in self._model(runner).named_parameters()},
                   self._file('final.pt'))


@HOOKS.register_module()
class KillHook(Hook):
    priority = 'LOWEST'  # after the checkpoint hook of the same step

    def __init__(self, after_step: int) -> None:
        self.after_step = after_step

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.iter + 1 == self.after_step:
            os.kill(os.getpid(), signal.SIGKILL)
