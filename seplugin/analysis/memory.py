"""Exact tensor memory of a step: peak live bytes and bytes kept for backward.

Process RSS is noisier than the effects worth measuring (allocator caches, page reuse), so
both counts follow tensor storages themselves: every storage an operation creates is
counted from its creation until Python and autograd release it. An operation's output that
shares a storage with one of its inputs (a view, a transpose, an in-place update, ``out=``)
creates nothing and is not counted.
"""
import gc
import weakref
from collections.abc import Callable, Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class PeakTensorMemory(TorchDispatchMode):
    """Live and peak bytes of the tensor storages created while the mode is active.

    Only storages created while the mode is active count: an output whose storage already
    existed, because it aliases an input of its operation (views and transposes of a
    parameter, in-place updates of parameters and optimizer state, ``out=``), is not new
    memory. Gradients and new optimizer state are. Views of a new storage count once.

    Example:
        >>> with PeakTensorMemory() as mem:
        ...     a = torch.empty(1000)              # 4000 bytes live
        ...     del a
        ...     b = torch.empty(500)
        >>> mem.peak, mem.live
        (4000, 2000)
    """

    @staticmethod
    def supported() -> bool:
        """Whether this torch lets a storage's release be observed (``weakref.finalize`` on
        ``untyped_storage()``); torch 2.1's storage wrappers never report it."""
        released = []
        tensor = torch.empty(1)
        weakref.finalize(tensor.untyped_storage(), released.append, True)
        del tensor
        gc.collect()
        return bool(released)

    def __init__(self) -> None:
        if not self.supported():
            raise RuntimeError(
                f'PeakTensorMemory needs to see tensor storages released, which torch '
                f'{torch.__version__} does not report (weakref.finalize on untyped_storage() '
                'never fires; it does on torch 2.6 and later)')
        super().__init__()
        self.live = 0
        self.peak = 0
        self._tracked: set[int] = set()

    def _release(self, key: int, nbytes: int) -> None:
        self._tracked.discard(key)
        self.live -= nbytes

    @staticmethod
    def _storages(tree) -> list[tuple[torch.Tensor, int]]:
        """(tensor, storage key) of every tensor with real memory in a pytree."""
        return [(t, t.untyped_storage()._cdata) for t in tree_flatten(tree)[0]
                if isinstance(t, torch.Tensor) and t.device.type != 'meta']

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        # storages that exist before the call, whether tracked or not (parameters, inputs)
        existing = {key for _, key in self._storages((args, kwargs))}
        out = func(*args, **kwargs)
        for tensor, key in self._storages(out):
            if key in self._tracked or key in existing:
                continue
            storage = tensor.untyped_storage()
            nbytes = storage.nbytes()
            self._tracked.add(key)
            self.live += nbytes
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._release, key, nbytes)
        return out


def saved_tensor_bytes(fn: Callable[[], object], ignore: Iterable[torch.Tensor] = ()) -> int:
    """Bytes of the distinct storages autograd keeps for backward while ``fn`` runs
    (views and tensors saved twice count once), leaving out those of ``ignore`` (e.g. a
    model's parameters, to count activations only)."""
    storages: dict[int, int] = {}
    ignored = {t.untyped_storage().data_ptr() for t in ignore}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in ignored:
            storages[storage.data_ptr()] = max(storages.get(storage.data_ptr(), 0),
                                               storage.nbytes())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn()
    return sum(storages.values())
