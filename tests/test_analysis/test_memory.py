"""PeakTensorMemory counts the storages a step creates, and nothing that existed before."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seplugin.analysis.memory import PeakTensorMemory

pytestmark = pytest.mark.skipif(not PeakTensorMemory.supported(),
                                reason=f'torch {torch.__version__} does not report storage '
                                'releases')
FLOAT = 4  # bytes


def test_linear_with_a_big_weight_counts_only_its_output():
    """``F.linear`` transposes its weight (a view of a storage that existed before): only
    the (2, 1000) output is new, not the 4 MB weight."""
    weight, x = torch.randn(1000, 1000), torch.randn(2, 1000)
    with PeakTensorMemory() as memory:
        y = F.linear(x, weight)
    assert memory.peak == y.numel() * FLOAT == 8000
    assert memory.live == 8000


@pytest.mark.parametrize('op', [
    lambda w: w.view(100, 10_000), lambda w: w.t(), lambda w: w.T.t().T,
    lambda w: w.add_(1), lambda w: w.mul_(2).relu_(), lambda w: w[::2],
    lambda w: torch.mul(w, 1, out=w), lambda w: w.detach()],
    ids=['view', 't', 'T.t.T', 'add_', 'mul_.relu_', 'slice', 'out=', 'detach'])
def test_views_and_in_place_updates_of_existing_storage_add_nothing(op):
    weight = torch.randn(1000, 1000)
    with PeakTensorMemory() as memory:
        op(weight)
    assert memory.peak == 0


def test_a_copy_of_a_view_is_new():
    """``w.t().contiguous()`` copies the transposed view: its 4 MB are new, once."""
    weight = torch.randn(1000, 1000)
    with PeakTensorMemory() as memory:
        copied = weight.t().contiguous().t().T
    assert memory.peak == memory.live == weight.numel() * FLOAT
    assert copied.untyped_storage().data_ptr() != weight.untyped_storage().data_ptr()


def test_an_op_sequence_matches_the_hand_count():
    with PeakTensorMemory() as memory:
        a = torch.ones(1000)               # 4000 live
        view = a.view(10, 100).t()         # a view: still 4000
        a.add_(1).relu_()                  # in place: 4000
        b = a * 2                          # 8000
        del a, view                        # a's storage released: 4000
        c = torch.cat([b, b])              # 4000 + 8000 = 12000, the peak
        del b                              # 8000
    assert (memory.peak, memory.live) == (12000, 8000)
    assert c.numel() * FLOAT == memory.live


def test_sgd_step_counts_gradients_not_parameters_or_momentum():
    """One step after a warm-up (momentum buffers exist): the parameter and its momentum
    are updated in place and are not new. New at the peak: the weight's gradient (4 MB),
    the loss and its gradient (a scalar each; the gradient of the sum is an expanded view
    of the latter). The (2, 1000) output is freed at once: nothing refers to it and the
    weight's gradient needs only ``x``."""
    torch.manual_seed(0)
    layer = nn.Linear(1000, 1000, bias=False)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(2, 1000)

    def step():
        optimizer.zero_grad(set_to_none=True)
        layer(x).sum().backward()
        optimizer.step()
    step()
    with PeakTensorMemory() as memory:
        step()
    assert memory.peak == layer.weight.numel() * FLOAT + 2 * FLOAT
