"""What ``tools/test.py`` writes besides the metrics: ``--out`` predictions and
``--show-dir`` drawings."""
import os.path as osp

import torch
from mmengine.evaluator import DumpResults
from mmengine.runner import Runner

# Drawings of classifiers are scaled to this short side: mmpretrain draws its text at a
# fixed size, unreadable on a 32-pixel image.
MIN_DRAWN_SIDE = 256


def _own_storage(value):
    """``value`` with every tensor copied into storage of its own size."""
    if isinstance(value, torch.Tensor):
        return value.detach().to('cpu', copy=True).contiguous()
    if isinstance(value, dict):
        return {k: _own_storage(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_own_storage(v) for v in value)
    return value


class DumpCompactResults(DumpResults):
    """mmengine's ``DumpResults`` whose pickle holds each sample's own predictions.

    A classifier's ``pred_score`` is a view of the batch's score tensor; pickled, a view
    carries the whole storage it views, so each sample stored the scores of its whole
    batch (45.8 MB for 128 samples of a 1000-class model at batch 64), and ``.to('cpu')``
    does not copy on the CPU. Here every tensor is copied into storage of its own size.
    """

    def process(self, data_batch, predictions) -> None:
        self.results.extend(_own_storage(predictions))


def show_predictions(runner: Runner, show_dir: str, detection: bool) -> str:
    """Draw every test image with its prediction into ``<log dir>/<show_dir>``, through
    the runner's mmdet ``DetVisualizationHook`` or mmpretrain ``VisualizationHook``;
    classifiers' drawings scaled to a legible size.

    mmpretrain's hook draws every 5000th sample (``interval``) into ``out_dir`` relative
    to the current directory; mmdet's draws every image into ``test_out_dir`` under the
    log dir.

    Returns:
        str: The folder the drawings go to.
    """
    out_dir = osp.abspath(osp.join(runner.log_dir, show_dir))
    names = ('DetVisualizationHook',) if detection else ('VisualizationHook',)
    hooks = [h for h in runner.hooks if type(h).__name__ in names]
    if not hooks:
        raise ValueError(f'--show-dir needs a {names[0]} in the config\'s default_hooks '
                         "(default_hooks.visualization, as in the OpenMMLab base configs)")
    for hook in hooks:
        if detection:
            hook.draw, hook.test_out_dir = True, out_dir
        else:
            hook.enable, hook.interval, hook.out_dir = True, 1, out_dir
            hook.draw_args.setdefault('resize', MIN_DRAWN_SIDE)
    return out_dir
