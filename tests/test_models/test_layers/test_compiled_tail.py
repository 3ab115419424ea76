"""The opt-in compiled backward of the lean SE tail: the eager numbers, taken only where
the lean tail is, and the eager backward where nothing can be compiled."""

import pytest
import torch
from toy import without_a_compiler

from seplugin.models import SEResNet
from seplugin.models.layers import se_residual


def set_compiled_tail(model, on: bool):
    for module in model.modules():
        if hasattr(module, 'compiled_tail'):
            module.compiled_tail = on


def gradients(model, image):
    model.zero_grad()
    outs = model(image)
    sum((out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum()
        for out in outs).backward()
    return [out.detach() for out in outs], {n: p.grad.clone() for n, p in
                                           model.named_parameters()}


@pytest.fixture
def model():
    torch.manual_seed(0)
    model = SEResNet(50, norm_eval=False, base_channels=8, se_ratio=4).double().train()
    for m in model.modules():  # BN statistics of random data, so that frozen ones matter
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.uniform_(m.bias, -0.5, 0.5)
    return model


@pytest.mark.parametrize('memory_format', [
    torch.contiguous_format, pytest.param(torch.channels_last, marks=pytest.mark.slow)])
def test_compiled_backward_equals_eager_in_float64(model, memory_format, monkeypatch):
    """Two input sizes (one compiled graph: dynamic shapes) and both memory layouts. The
    gradients (up to ~5000) differ from the eager ones by ~1e-12: float32 would be 1e-4."""
    compiled_calls = []
    original = se_residual.compiled_grads

    def counted(*args):
        grads = original(*args)
        compiled_calls.append(grads is not None)
        return grads
    monkeypatch.setattr(se_residual, 'compiled_grads', counted)
    for size in (48, 64):
        image = torch.randn(2, 3, size, size, dtype=torch.float64).contiguous(
            memory_format=memory_format)
        set_compiled_tail(model, False)
        outs, eager = gradients(model, image)
        set_compiled_tail(model, True)
        compiled_outs, compiled = gradients(model, image)
        for out, compiled_out in zip(outs, compiled_outs):
            torch.testing.assert_close(compiled_out, out, rtol=1e-12, atol=1e-12)
        for name, grad in eager.items():  # float64 rounding of another summation order
            torch.testing.assert_close(compiled[name], grad, rtol=1e-9, atol=1e-9)
    blocks = [m for m in model.modules() if hasattr(m, 'compiled_tail')]
    assert compiled_calls == [True] * 2 * len(blocks)  # every block, compiled, both sizes


def test_compiled_tail_only_where_the_lean_tail_is(model):
    """A forward hook on an SE layer sends its block down the plain path: the hook fires and
    the compiled backward is not called for it."""
    set_compiled_tail(model, True)
    block = model.layer1[0]
    calls, seen = [], []
    original = se_residual.compiled_grads
    se_residual.compiled_grads = lambda *args: calls.append(args[0].shape) or original(*args)
    try:
        handle = block.se_layer.register_forward_hook(lambda *args: seen.append(1))
        assert block.why_not_lean_tail(torch.ones(1)) == 'hooks on se_layer'
        gradients(model, torch.randn(2, 3, 48, 48, dtype=torch.float64))
        handle.remove()
    finally:
        se_residual.compiled_grads = original
    assert seen == [1]
    blocks = [m for m in model.modules() if hasattr(m, 'compiled_tail')]
    assert len(calls) == len(blocks) - 1  # every block but the hooked one


@pytest.mark.slow  # a fresh interpreter and a failing compile: ~20 s
def test_without_a_compiler_the_eager_backward_runs_after_one_warning(tmp_path):
    """No C++ compiler (CXX points nowhere, empty inductor cache): one warning naming the
    switch, and the eager numbers."""
    code = """
eager = grads()
for m in model.modules():
    if hasattr(m, 'compiled_tail'):
        m.compiled_tail = True
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    fallback = grads()
    grads()
ours = [str(w.message) for w in caught if 'compiled SE tail' in str(w.message)]
assert len(ours) == 1, ours
print(ours[0])
assert all(torch.equal(a, b) for a, b in zip(eager, fallback))
"""
    stdout = without_a_compiler(tmp_path, code)
    assert 'the eager backward runs instead' in stdout
    assert 'SEPLUGIN_COMPILED_TAIL' in stdout


@pytest.mark.parametrize('value, expected', [('1', True), ('on', True), ('0', False),
                                             ('', False)])
def test_environment_switch(monkeypatch, value, expected):
    monkeypatch.setenv('SEPLUGIN_COMPILED_TAIL', value)
    assert se_residual.compiled_tail_env() is expected


def test_environment_switch_rejects_what_it_does_not_understand(monkeypatch):
    monkeypatch.setenv('SEPLUGIN_COMPILED_TAIL', 'fast')
    with pytest.raises(ValueError, match=r"SEPLUGIN_COMPILED_TAIL='fast' is not understood; "
                       r'expected 0 \(compiled SE tail backward off, the default\) or 1 \(on\)'):
        se_residual.compiled_tail_env()
