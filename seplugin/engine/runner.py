"""mmengine's Runner with up-front checks of what it is given: datasets, checkpoints, and
the shapes the model's modules meet."""
import re
from contextlib import contextmanager

import numpy as np
import torch
from mmengine.hooks import LoggerHook
from mmengine.hooks import logger_hook as logger_hook_module
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint, _load_checkpoint_to_model

from seplugin.checkpoint import CheckpointError, check_state_dict_fits, explain_load_failure
from seplugin.cli.console import attach_console

from .dist import check_sync_bn


def _with_context(error: Exception, context: str) -> Exception:
    """``error`` again, its message prefixed with ``context`` (the same type when it can be
    built from one message, else the error itself)."""
    message = error.args[0] if len(error.args) == 1 and isinstance(error.args[0], str) \
        else str(error)
    try:
        return type(error)(f'{context}: {message}')
    except Exception:  # an exception type with another signature
        return error


class EmptyDatasetError(ValueError):
    """A dataset with no samples (after its filters)."""


def describe_dataset(cfg) -> str:
    """``type``, ``data_root``, ``ann_file``, ``split``, ``data_prefix`` of a dataset config."""
    if not isinstance(cfg, dict):
        return type(cfg).__name__
    keys = ('type', 'data_root', 'ann_file', 'split', 'data_prefix')
    return ', '.join(f'{k}={cfg[k]!r}' for k in keys if cfg.get(k) not in (None, ''))


class CheckedRunner(Runner):
    """``mmengine.runner.Runner`` that stops with a message naming the bad value where the
    plain Runner goes on silently or fails deep inside another library:

    - a dataset with no samples: mmengine fails with numpy's "need at least one array to
      concatenate" (or, without ``serialize_data``, trains on nothing);
    - a classification label outside ``0..model.head.num_classes - 1``: the loss fails
      with "Target N is out of bounds", naming neither the file nor the sample;
    - a checkpoint that does not fit the model, for evaluation (``load_from`` in
      ``val()``/``test()``) or ``resume``: mmengine logs the mismatch and goes on with
      random weights where the checkpoint had none; fine-tuning from ``load_from`` stays
      lenient, as in mmengine;
    - a ``resume`` from a file without training state;
    - a checkpoint file that fails to load: the error names the file and what is wrong
      with it (see :func:`seplugin.checkpoint.diagnose`);
    - SyncBN in a distributed run on CPUs (see :func:`seplugin.engine.dist.check_sync_bn`);

    and in a distributed ``test()`` only rank 0 writes the metrics file (mmengine lets every
    rank write it, and the writes race).

    ``tools/train.py`` and ``tools/test.py`` use it unless the config names a
    ``runner_type``.
    """

    _checkpoint_must_fit = False
    _resuming = False

    def build_logger(self, log_level='INFO', log_file=None, **kwargs):
        """mmengine's logger, with the console kept to progress, phases, warnings and
        errors unless ``--verbose`` (see :mod:`seplugin.cli.console`); the log file gets
        everything."""
        logger = super().build_logger(log_level=log_level, log_file=log_file, **kwargs)
        attach_console(logger)
        return logger

    def wrap_model(self, model_wrapper_cfg, model):
        check_sync_bn(model, self.cfg.get('env_cfg', {}).get('dist_cfg', {}).get('backend'),
                      self.cfg.get('sync_bn'))
        return super().wrap_model(model_wrapper_cfg, model)

    # -- datasets --------------------------------------------------------------------
    def build_dataloader(self, dataloader, seed=None, diff_rank_seed=False):
        which = next((name for name in ('train', 'val', 'test')
                      if dataloader is getattr(self, f'_{name}_dataloader', None)), None)
        where = f'{which}_dataloader.dataset' if which else 'the dataset'
        dataset_cfg = dataloader.get('dataset') if isinstance(dataloader, dict) else None
        try:
            loader = Runner.build_dataloader(dataloader, seed=seed,
                                             diff_rank_seed=diff_rank_seed)
        except ValueError as e:
            # mmengine's BaseDataset serialises its samples with np.concatenate
            if 'need at least one array to concatenate' in str(e):
                raise EmptyDatasetError(self._empty_message(where, dataset_cfg)) from e
            raise _with_context(e, f'{where} ({describe_dataset(dataset_cfg)})') from e
        except (FileNotFoundError, AssertionError, RuntimeError, KeyError, TypeError) as e:
            # e.g. mmpretrain's "The number of subfolders (1) doesn't match the number of
            # specified classes (1000). Please check the data folder.": which folder?
            raise _with_context(e, f'{where} ({describe_dataset(dataset_cfg)})') from e
        if len(loader.dataset) == 0:
            raise EmptyDatasetError(self._empty_message(where, dataset_cfg))
        self._check_labels(loader.dataset, where, dataset_cfg)
        return loader

    @staticmethod
    def _empty_message(where: str, dataset_cfg) -> str:
        message = f'{where} ({describe_dataset(dataset_cfg)}) has no samples'
        if isinstance(dataset_cfg, dict) and dataset_cfg.get('filter_cfg'):
            message += (f' after its filter_cfg {dict(dataset_cfg["filter_cfg"])} (e.g. '
                        'filter_empty_gt drops images without annotations)')
        return message + ('; check the annotation file and the image folder (data_root, '
                          'ann_file, data_prefix)')

    def _unwrapped_model(self) -> torch.nn.Module:
        return self.model.module if is_model_wrapper(self.model) else self.model

    def _check_labels(self, dataset, where: str, dataset_cfg) -> None:
        """Detection: the box heads have the dataset's number of classes. Single-label
        classification: every label is one of the head's classes."""
        classes = (getattr(dataset, 'metainfo', None) or {}).get('classes')
        for name, module in self._unwrapped_model().named_modules():
            count = getattr(module, 'num_classes', None)
            if 'bbox_head' in name and 'rpn' not in name and isinstance(count, int) \
                    and classes is not None and count != len(classes):
                raise ValueError(
                    f'model.{name}.num_classes is {count}, but {where} has {len(classes)} '
                    f'classes {tuple(classes)} (metainfo.classes); set num_classes to '
                    f'{len(classes)}')
        head = getattr(self._unwrapped_model(), 'head', None)
        num_classes = getattr(head, 'num_classes', None)
        if not isinstance(num_classes, int) or not hasattr(dataset, 'get_gt_labels'):
            return
        try:
            labels = np.asarray(dataset.get_gt_labels())
        except (KeyError, TypeError, ValueError):  # no labels (test split), multi-label
            return
        if labels.dtype.kind not in 'iu' or labels.ndim != 1:
            return
        bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
        if bad.size:
            first = int(bad[0])
            sample = dataset.get_data_info(first).get('img_path', f'sample {first}')
            raise ValueError(
                f'{where} ({describe_dataset(dataset_cfg)}): label {int(labels[first])} of '
                f'{sample!r} is outside 0..{num_classes - 1}, the classes of the model '
                f'(model.head.num_classes={num_classes}); {bad.size} of {labels.size} '
                f'samples have labels outside that range, e.g. '
                f'{sorted({int(labels[i]) for i in bad[:100]})[:10]}')

    # -- checkpoints -----------------------------------------------------------------
    def load_checkpoint(self, filename, map_location='cpu', strict=False,
                        revise_keys=[(r'^module.', '')]):  # noqa: B006 (mmengine's default)
        """``Runner.load_checkpoint``, plus: for ``resume``, the file must hold training
        state; for ``resume``, ``val()`` and ``test()``, its weights must fit the model
        (checked before they are copied into it). The file is read once, by mmengine's
        loader; only when that fails is the file examined, to say what is wrong with it."""
        with explain_load_failure(filename):
            checkpoint = _load_checkpoint(filename, map_location=map_location)
        if self._resuming:
            missing = [key for key in ('meta', 'state_dict') if key not in checkpoint]
            if missing or 'iter' not in checkpoint['meta']:
                raise CheckpointError(
                    f'cannot resume from {filename!r}: it has no training state '
                    f'({", ".join(missing) or "meta.iter"} missing); it is a weights file, '
                    'not a checkpoint written by a training run. Start from its weights '
                    'with load_from instead')
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = self._unwrapped_model()
        if self._checkpoint_must_fit:
            unexpected = check_state_dict_fits(model, checkpoint, filename, revise_keys)
            if unexpected:
                self.logger.warning(f'checkpoint {filename!r} has {len(unexpected)} keys '
                                    f'the model does not use: {unexpected[:8]}')
        checkpoint = _load_checkpoint_to_model(model, checkpoint, strict,
                                               revise_keys=revise_keys)
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint

    def resume(self, filename, *args, **kwargs):
        self._checkpoint_must_fit = self._resuming = True
        try:
            return super().resume(filename, *args, **kwargs)
        finally:
            self._checkpoint_must_fit = self._resuming = False

    def val(self):
        self._checkpoint_must_fit = True
        return super().val()

    def test(self):
        self._checkpoint_must_fit = True
        if self.rank != 0:
            for hook in self._hooks:
                if isinstance(hook, LoggerHook):
                    _without_metrics_file(hook)
        return super().test()


# torch's messages for sizes that do not agree ("mat1 and mat2 shapes cannot be multiplied",
# "expected input[8, 16, 32, 32] to have 64 channels", "size of tensor a (7) must match")
SHAPE_ERROR = re.compile(r'shape|size|channel|dimension', re.IGNORECASE)


def _without_metrics_file(hook: LoggerHook) -> None:
    """Keep a rank other than 0 from writing the test metrics file.

    mmengine's ``LoggerHook.after_test_epoch`` dumps the metrics to
    ``<work_dir>/<timestamp>/<timestamp>.json`` on every rank. The ranks share the
    timestamp and, on one machine or shared storage, the file: their writes race, and the
    file can end up as one rank's JSON followed by the tail of another's (seen with 2
    processes here). Only rank 0 writes it now; the others still log the metrics.
    """
    after_test_epoch = hook.after_test_epoch

    def without_dump(runner, metrics=None):
        dump = logger_hook_module.dump
        logger_hook_module.dump = lambda *args, **kwargs: None
        try:
            after_test_epoch(runner, metrics)
        finally:
            logger_hook_module.dump = dump

    hook.after_test_epoch = without_dump


# The frames of ``nn.Module.__call__``: their locals are the module (``self``) and its
# positional inputs (``args``).
MODULE_CALL_CODES = tuple(getattr(torch.nn.Module, name).__code__
                          for name in ('_wrapped_call_impl', '_call_impl')
                          if hasattr(torch.nn.Module, name))


def failing_module(error: BaseException, model: torch.nn.Module):
    """The innermost module of ``model`` whose call ``error`` went through, read from the
    error's traceback: ``(name, module, positional inputs)``, or None.

    The traceback keeps the frames of every ``nn.Module.__call__`` the error passed, so
    nothing has to be recorded while the model runs.
    """
    if is_model_wrapper(model):
        model = model.module
    names = {module: name for name, module in model.named_modules()}
    found = None
    trace = error.__traceback__
    while trace is not None:  # from the outermost frame to the innermost
        frame = trace.tb_frame
        if frame.f_code in MODULE_CALL_CODES:
            module = frame.f_locals.get('self')
            if module in names:
                found = (names[module], module, frame.f_locals.get('args', ()))
        trace = trace.tb_next
    return found


@contextmanager
def explain_module_errors(model: torch.nn.Module):
    """Name the module in whose forward an error arises, with its input shapes.

    A config whose widths do not agree (a head's ``in_channels`` that is not the
    backbone's output width, say) fails inside torch with "mat1 and mat2 shapes cannot be
    multiplied (32x128 and 64x1000)", naming neither the module nor the config key. Within
    this context, such a ``RuntimeError`` (one whose message speaks of shapes, sizes,
    channels or dimensions) is raised again with the innermost module that was running,
    e.g. ``model.head.fc (Linear(in_features=64, ...)), called with input of shape
    (32, 128)``. The module is found in the error's traceback after the failure: nothing
    runs while the model works (no hooks).
    """
    try:
        yield
    except RuntimeError as e:
        if not SHAPE_ERROR.search(str(e)):
            raise
        found = failing_module(e, model)
        if found is None:
            raise
        name, module, args = found
        shapes = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]
        path = f'model.{name}' if name else 'model'
        section = '.'.join(path.split('.')[:2])
        text = repr(module).splitlines()[0]
        raise RuntimeError(
            f'{e}\n--> in {path} ({text}), called with input of shape '
            f'{shapes[0] if len(shapes) == 1 else shapes}: check the config values that '
            f'size {section} and the layers feeding it (in_channels, num_classes, ...)'
        ) from e
