"""explain_module_errors: a shape error names its module, and costs nothing while all is well."""
import gc

import pytest
import torch
from torch import nn

from seplugin.engine.runner import explain_module_errors
from seplugin.models import SEResNet


class Net(nn.Module):
    def __init__(self, head_in: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(head_in, 4))

    def forward(self, x):
        return self.head(self.body(x).mean((2, 3)))


def test_shape_error_names_the_innermost_module_and_its_input():
    model = Net(head_in=16)
    with pytest.raises(RuntimeError) as error:
        with explain_module_errors(model):
            model(torch.randn(2, 3, 6, 6))
    message = str(error.value)
    assert 'mat1 and mat2 shapes cannot be multiplied (2x8 and 16x4)' in message  # torch's
    assert message.endswith(
        '--> in model.head.1 (Linear(in_features=16, out_features=4, bias=True)), called '
        'with input of shape (2, 8): check the config values that size model.head and the '
        'layers feeding it (in_channels, num_classes, ...)')
    assert isinstance(error.value.__cause__, RuntimeError)


def test_other_errors_pass_unchanged():
    model = Net(head_in=8)
    with pytest.raises(ValueError, match='^not about shapes$'):
        with explain_module_errors(model):
            raise ValueError('not about shapes')
    with pytest.raises(RuntimeError, match='^CUDA out of memory$'):
        with explain_module_errors(model):
            raise RuntimeError('CUDA out of memory')
    with pytest.raises(RuntimeError, match=r'^size mismatch outside the model$'):
        with explain_module_errors(model):  # no module of the model in the traceback
            raise RuntimeError('size mismatch outside the model')


def test_no_hooks_while_the_model_runs():
    model = Net(head_in=8)
    counts = []

    class Probe(nn.Module):
        def forward(self, x):
            module = nn.modules.module
            counts.append(sum(len(m._forward_hooks) + len(m._forward_pre_hooks)
                              for m in model.modules())
                          + len(module._global_forward_hooks)
                          + len(module._global_forward_pre_hooks))
            return x

    model.body.append(Probe())
    with explain_module_errors(model):
        model(torch.randn(2, 3, 6, 6))
    assert counts == [0]


def live_tensors() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if torch.is_tensor(obj))


@pytest.fixture
def one_thread():
    """A tiny model trains in a fraction of a second on one thread, in many on a busy
    machine's several."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize('se_position', ['standard', 'pre', 'post', 'identity'])
def test_no_tensors_pile_up_with_checkpointing(se_position, one_thread):
    """with_cp=True recomputes each block in backward; with hooks on every module, the
    post-hook of a block that ends in a module (e.g. 'post') was skipped and its inputs kept,
    one per block and iteration."""
    model = SEResNet(depth=18, base_channels=16, with_cp=True, se_position=se_position,
                     out_indices=(3,))
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(2, 3, 32, 32)
    counts = []
    with explain_module_errors(model):
        for step in range(5):
            loss = model(x)[-1].square().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            del loss
            if step in (1, 4):  # after the optimizer has made its momentum buffers
                counts.append(live_tensors())
    assert counts[0] == counts[1], counts
