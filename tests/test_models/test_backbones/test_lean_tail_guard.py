"""``why_not_lean_tail``: the lean SE tail runs only where nobody can tell, reason by reason.

Each case checks the reason given, that the block then really runs the plain module calls
(the lean tail's ``batch_norm_affine`` is not reached) and that its output equals the lean
tail's (float64, so rounding of the two orders of operations does not hide a difference).
"""
import copy
from contextlib import contextmanager

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from seplugin.models import SEResNet
from seplugin.models.backbones import se_block
from seplugin.models.layers.se_residual import LEAN_TAIL_ENV

HOOKED = ['norm3', 'se_layer', 'se_layer.conv1', 'se_layer.conv1.conv',
          'se_layer.conv1.activate', 'se_layer.conv2', 'se_layer.conv2.conv',
          'se_layer.conv2.activate']


def a_block(**kwargs):
    """layer1[0] of a narrow float64 SE-ResNet-50 in training mode, and an input for it."""
    torch.manual_seed(0)
    model = SEResNet(50, norm_eval=False, base_channels=8, se_ratio=4, **kwargs).double().train()
    block = model.layer1[0]
    for m in block.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.5, 0.5)
    return block, torch.randn(2, block.conv1.in_channels, 8, 8, dtype=torch.float64)


@contextmanager
def lean_calls():
    """Counts the lean tail's calls inside the context."""
    calls = []
    original = se_block.batch_norm_affine

    def counted(*args):
        calls.append(1)
        return original(*args)
    se_block.batch_norm_affine = counted
    try:
        yield calls
    finally:
        se_block.batch_norm_affine = original


def run(block, x):
    """Output and input gradient of a copy of ``block``, and whether it ran lean."""
    block = copy.deepcopy(block)
    x = x.clone().requires_grad_()
    with lean_calls() as calls:
        out = block(x)
    out.square().sum().backward()
    return out, x.grad, bool(calls)


def assert_plain_path_with_lean_numbers(block, x, reason, original):
    """``block`` gives ``reason``, runs the plain path and computes what ``original`` (the
    block before the change, on the lean tail) computes."""
    assert block.why_not_lean_tail(x) == reason
    out, grad, lean = run(block, x)
    assert not lean
    ref, ref_grad, ref_lean = run(original, x)
    assert ref_lean
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12)


def test_default_takes_the_lean_tail():
    block, x = a_block()
    assert block.why_not_lean_tail(x) == ''
    assert run(block, x)[2]
    assert block.eval().why_not_lean_tail(x) == ''


def test_block_attribute_switch():
    block, x = a_block()
    original = copy.deepcopy(block)
    block.lean_tail = False
    assert_plain_path_with_lean_numbers(block, x, 'switched off: lean_tail is False',
                                        original)


def test_environment_switch(monkeypatch):
    block, x = a_block()
    monkeypatch.setenv(LEAN_TAIL_ENV, '0')
    assert block.why_not_lean_tail(x) == 'switched off: SEPLUGIN_LEAN_TAIL=0'
    assert not run(block, x)[2]
    monkeypatch.setenv(LEAN_TAIL_ENV, '1')
    assert block.why_not_lean_tail(x) == ''
    monkeypatch.setenv(LEAN_TAIL_ENV, 'maybe')
    with pytest.raises(ValueError, match=r"SEPLUGIN_LEAN_TAIL='maybe' is not understood; "
                                         r'expected 0 \(lean SE tail off\) or 1'):
        block.why_not_lean_tail(x)


@pytest.mark.parametrize('position', ['pre', 'post', 'identity', '3x3'])
def test_other_placements(position):
    block, x = a_block(se_position=position)
    assert block.why_not_lean_tail(x) == \
        f"SE position {position!r} (the lean tail is the standard one)"
    assert not run(block, x)[2]


def test_plugins_after_the_last_conv():
    plugin = dict(cfg=dict(type='ContextBlock', ratio=1 / 4), position='after_conv3')
    block, x = a_block(plugins=[plugin])
    assert block.why_not_lean_tail(x).startswith('plugins after the last conv:')
    assert not run(block, x)[2]


def test_stochastic_depth_in_training_only():
    torch.manual_seed(0)
    model = SEResNet(50, norm_eval=False, base_channels=8, se_ratio=4, drop_path_rate=0.5).train()
    block, x = model.layer4[-1], torch.randn(2, 256, 4, 4)
    assert block.why_not_lean_tail(x) == 'stochastic depth while training'
    assert block.eval().why_not_lean_tail(x) == ''


def test_other_norm_classes():
    block, x = a_block(norm_cfg=dict(type='GN', num_groups=2))
    assert block.why_not_lean_tail(x) == 'the last norm is GroupNorm, not torch.nn.BatchNorm2d'
    assert not run(block, x)[2]

    class MyBatchNorm(nn.BatchNorm2d):
        pass
    block, x = a_block()
    original = copy.deepcopy(block)
    norm = MyBatchNorm(block.norm3.num_features).double()
    norm.load_state_dict(block.norm3.state_dict())
    block.bn3 = norm  # norm3 is a property naming bn3
    assert_plain_path_with_lean_numbers(
        block, x, 'the last norm is MyBatchNorm, not torch.nn.BatchNorm2d', original)


class Doubled(nn.Module):
    """A parametrization (as pruning and weight normalisation libraries use)."""

    def forward(self, weight):
        return weight


@pytest.mark.parametrize('change, reason', [
    (lambda se: parametrize.register_parametrization(se.conv1.conv, 'weight', Doubled()),
     'se_layer.conv1 is not as SELayer builds it (replaced or wrapped)'),
    (lambda se: setattr(se.conv2, 'activate', nn.SiLU()),
     'se_layer.conv2 is not as SELayer builds it (replaced or wrapped)'),
    (lambda se: se.conv2.add_module('dropout', nn.Dropout(0.0)),
     'se_layer.conv2 is not as SELayer builds it (replaced or wrapped)'),
    (lambda se: se.add_module('extra', nn.Identity()),
     'the SE layer is not an SELayer as built (replaced or wrapped)'),
])
def test_replaced_or_wrapped_se_modules(change, reason):
    block, x = a_block()
    change(block.se_layer)
    assert block.why_not_lean_tail(x) == reason
    assert not run(block, x)[2]


def test_replaced_se_layer_class():
    block, x = a_block()
    original = copy.deepcopy(block)
    se = block.se_layer
    block.se_layer = type('MySELayer', (type(se),), {})(se.in_channels, ratio=4).double()
    block.se_layer.load_state_dict(se.state_dict())
    assert_plain_path_with_lean_numbers(
        block, x, 'the SE layer is not an SELayer as built (replaced or wrapped)', original)


@pytest.mark.parametrize('kind', ['forward', 'forward_pre', 'full_backward',
                                  'full_backward_pre'])
@pytest.mark.parametrize('name', HOOKED)
def test_module_hooks(name, kind):
    block, x = a_block()
    original = copy.deepcopy(block)
    module = block.get_submodule(name)
    fired = []
    getattr(module, f'register_{kind}_hook')(lambda *args: fired.append(1))
    reason = f'hooks on {name}'.replace('hooks on norm3', 'hooks on last norm')
    assert_plain_path_with_lean_numbers(block, x, reason, original)
    assert fired or kind == 'full_backward_pre' and name.endswith('activate')


def test_global_module_hooks():
    block, x = a_block()
    fired = []
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, out: fired.append(type(module).__name__))
    try:
        assert block.why_not_lean_tail(x) == 'global module hooks'
        assert not run(block, x)[2]
    finally:
        handle.remove()
    assert {'BatchNorm2d', 'SELayer', 'ConvModule', 'Conv2d', 'Sigmoid'} <= set(fired)
    assert block.why_not_lean_tail(x) == ''


class Subclass(torch.Tensor):
    pass


def test_tensor_subclasses():
    block, x = a_block()
    reason = 'a tensor subclass or __torch_function__ override'
    assert block.why_not_lean_tail(x.as_subclass(Subclass)) == reason
    block.se_layer.conv2.conv.weight = nn.Parameter(
        block.se_layer.conv2.conv.weight.detach().as_subclass(Subclass))
    assert block.why_not_lean_tail(x) == reason


class Probe(nn.Module):
    """Runs a block and records what its guard says."""

    def __init__(self, block):
        super().__init__()
        self.block, self.seen = block, []

    def forward(self, x):
        self.seen.append(self.block.why_not_lean_tail(x))
        return self.block(x)


def reasons_inside(fn, block):
    """What the guard says when called inside a tracer/transform that runs a module."""
    probe = Probe(block)
    fn(probe)
    return probe.seen


def test_tracers_and_transforms():
    block, x = a_block()
    block.eval()
    assert reasons_inside(lambda f: torch.fx.symbolic_trace(f), block) == \
        ['torch.fx symbolic tracing']
    assert reasons_inside(lambda f: torch.jit.trace(f, x, check_trace=False), block) == \
        ['torch.jit tracing']
    from torch.fx.experimental.proxy_tensor import make_fx
    assert reasons_inside(lambda f: make_fx(f)(x), block) == ['make_fx tracing']
    assert reasons_inside(lambda f: torch.func.vmap(f)(x[:, None]), block) == \
        ['a torch.func transform (vmap, grad, ...)']


def test_torch_compile_traces_through_the_guard_and_runs_plain():
    """The compiler must see the whole guard: a graph break inside it would run the rest
    uncompiled, where no compiler is seen (torch 2.1 broke at a getattr on a module)."""
    block, x = a_block()
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(block)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    with lean_calls() as calls:
        torch.compile(block, backend='eager')(x)
    assert not calls


def test_double_backward_names_the_switch():
    """A gradient penalty differentiates the lean tail's gradient: a clear error, and the
    switch named in it gives the plain path's second derivatives."""
    block, x = a_block()

    def penalty(block):
        inp = x.clone().requires_grad_()
        grad, = torch.autograd.grad(block(inp).square().sum(), inp, create_graph=True)
        return grad.square().sum()

    lean = copy.deepcopy(block)
    penalty(lean)  # create_graph alone is fine: the error comes with the second backward
    with pytest.raises(RuntimeError, match=r'no double backward .*SEPLUGIN_LEAN_TAIL=0 .*'
                                           r'lean_tail = False'):
        penalty(lean).backward()
    block.lean_tail = False
    penalty(block).backward()
    assert block.se_layer.conv1.conv.weight.grad is not None
