"""``why_not_lean_tail``: the lean SE tail runs only where nobody can tell, reason by reason.

Each case checks the reason given, that the block then really runs the plain module calls
(the lean tail's ``batch_norm_affine`` is not reached) and that its output equals the lean
tail's (float64, so rounding of the two orders of operations does not hide a difference).
"""
import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize
from toy import lean_calls

from seplugin.models import SEResNet
from seplugin.models.backbones import se_block
from seplugin.models.layers.se_residual import LEAN_TAIL_ENV

# Every module of a bottleneck with a downsample: the guard's rule covers them all,
# including the ones the lean tail does not call (bn3, the SE layer, drop_path, relu).
HOOKED = ['conv1', 'bn1', 'conv2', 'bn2', 'conv3', 'bn3', 'relu', 'downsample',
          'downsample.0', 'downsample.1', 'se_layer', 'se_layer.conv1',
          'se_layer.conv1.conv', 'se_layer.conv1.activate', 'se_layer.conv2',
          'se_layer.conv2.conv', 'se_layer.conv2.activate', 'drop_path']


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


def mmdet_bottleneck(block):
    """mmdet's own Bottleneck with the weights of the SE block's trunk."""
    from mmdet.models.backbones.resnet import Bottleneck
    plain = Bottleneck(block.conv1.in_channels, block.conv1.out_channels,
                       downsample=copy.deepcopy(block.downsample)).double().train()
    plain.load_state_dict(block.state_dict(), strict=False)
    return plain


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
    (lambda b: parametrize.register_parametrization(b.se_layer.conv1.conv, 'weight',
                                                    Doubled()),
     'se_layer.conv1.conv is a ParametrizedConv2d, not the Conv2d the block built '
     '(replaced or wrapped)'),
    (lambda b: setattr(b.se_layer.conv2, 'activate', nn.SiLU()),
     'se_layer.conv2.activate is a SiLU, not the Sigmoid the block built (replaced or '
     'wrapped)'),
    (lambda b: b.se_layer.conv2.add_module('dropout', nn.Dropout(0.0)),
     'se_layer.conv2.dropout was added after the block was built'),
    (lambda b: b.se_layer.add_module('extra', nn.Identity()),
     'se_layer.extra was added after the block was built'),
    (lambda b: delattr(b.se_layer.conv1, 'activate'), 'a module the block built was removed'),
    # activation-swap and quantisation tools replace the block's own ReLU too
    (lambda b: setattr(b, 'relu', nn.SiLU()),
     'relu is a SiLU, not the ReLU the block built (replaced or wrapped)'),
    (lambda b: setattr(b, 'drop_path', nn.Dropout(0.0)),
     'drop_path is a Dropout, not the Identity the block built (replaced or wrapped)'),
])
def test_replaced_or_wrapped_modules(change, reason):
    block, x = a_block()
    change(block)
    assert block.why_not_lean_tail(x) == reason
    if reason != 'a module the block built was removed':  # that block cannot run at all
        assert not run(block, x)[2]


def test_a_swapped_relu_gives_the_plain_blocks_numbers():
    """Before the one rule, ``block.relu = nn.SiLU()`` passed the guard and the lean
    tail applied ReLU anyway (0.278 away from the plain path)."""
    block, x = a_block()
    block.relu = nn.SiLU()
    plain = copy.deepcopy(block)
    plain.lean_tail = False
    out, grad, _ = run(block, x)
    ref, ref_grad, _ = run(plain, x)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    torch.testing.assert_close(grad, ref_grad, rtol=0, atol=0)


def test_max_squeeze_trains_on_the_plain_path():
    """``squeeze='max'``: amax's backward keeps the map the lean tail would overwrite (an
    in-place error in backward before); the plain path runs and trains."""
    block, x = a_block(se_cfg=dict(squeeze='max'))
    assert block.why_not_lean_tail(x) == "SE squeeze 'max' (the lean tail implements 'avg')"
    out, grad, lean = run(block, x)
    assert not lean and torch.isfinite(grad).all()


def test_forward_mode_ad_runs_the_plain_path():
    """Forward AD used to reach the autograd function (no jvp); now the plain path runs and
    its tangent equals a float64 finite difference."""
    from torch.autograd import forward_ad
    block, x = a_block()
    block.eval()
    tangent = torch.randn_like(x)
    with forward_ad.dual_level():
        assert block.why_not_lean_tail(x) == 'forward-mode AD (torch.autograd.forward_ad)'
        out = block(forward_ad.make_dual(x, tangent))
        jvp = forward_ad.unpack_dual(out).tangent
    eps = 1e-6
    with torch.no_grad():
        numeric = (block(x + eps * tangent) - block(x - eps * tangent)) / (2 * eps)
    torch.testing.assert_close(jvp, numeric, rtol=1e-6, atol=1e-7)
    assert block.why_not_lean_tail(x) == ''


@pytest.mark.parametrize('probe, reason', [
    ('_dispatch_modes', 'cannot tell whether a torch dispatch mode is active on this torch'),
    ('_fx_tracing', 'cannot tell whether torch.fx is tracing on this torch'),
    ('_functorch_active',
     'cannot tell whether a torch.func transform is active on this torch'),
    ('_forward_ad', 'cannot tell whether forward-mode AD is active on this torch'),
    ('_is_compiling', 'cannot tell whether torch.compile is tracing on this torch'),
])
def test_a_private_probe_this_torch_lacks_means_the_plain_path(monkeypatch, probe, reason):
    """The private torch names are looked up defensively: one that a torch release moved
    must neither break ``import seplugin`` nor answer "no"."""
    assert se_block._private('torch.utils._python_dispatch', 'no_such_name') is None
    assert se_block._private('torch._no_such_module', 'x') is None
    block, x = a_block()
    monkeypatch.setattr(se_block, probe, None)
    assert block.why_not_lean_tail(x) == reason
    assert not run(block, x)[2]


def test_dispatch_modes_other_than_seplugins_memory_counter():
    """A FLOP counter (a dispatch mode) sees the plain block's operations; seplugin's own
    memory counter measures the lean tail, which is what it is for."""
    from torch.utils.flop_counter import FlopCounterMode

    from seplugin.analysis.memory import PeakTensorMemory
    block, x = a_block()
    with FlopCounterMode(display=False):
        reason = block.why_not_lean_tail(x)
    assert reason.startswith('a torch dispatch mode is active (') and 'FlopCounter' in reason
    with PeakTensorMemory():
        assert block.why_not_lean_tail(x) == ''


def test_replaced_se_layer_class():
    block, x = a_block()
    original = copy.deepcopy(block)
    se = block.se_layer
    block.se_layer = type('MySELayer', (type(se),), {})(se.in_channels, ratio=4).double()
    block.se_layer.load_state_dict(se.state_dict())
    assert_plain_path_with_lean_numbers(
        block, x, 'se_layer is a MySELayer, not the SELayer the block built (replaced or '
        'wrapped)', original)


@pytest.mark.parametrize('kind', ['forward', 'forward_pre', 'full_backward',
                                  'full_backward_pre'])
@pytest.mark.parametrize('name', HOOKED)
def test_module_hooks(name, kind):
    block, x = a_block()
    original = copy.deepcopy(block)
    module = block.get_submodule(name)
    fired = []
    getattr(module, f'register_{kind}_hook')(lambda *args: fired.append(1))
    if kind.startswith('full_backward') and name in ('bn1', 'bn2', 'relu'):
        # mmdet's own Bottleneck refuses these: its in-place ReLU modifies the hooked
        # output. The guard sends the block to the plain path, which fails the same way.
        upstream = mmdet_bottleneck(original)
        getattr(upstream.get_submodule(name), f'register_{kind}_hook')(lambda *a: None)
        for subject in (upstream, block):
            with pytest.raises(RuntimeError, match='is a view and is being modified inplace'):
                run(subject, x)
        assert block.why_not_lean_tail(x) == f'hooks on {name}'
        return
    assert_plain_path_with_lean_numbers(block, x, f'hooks on {name}', original)
    # the plain path calls every module, so every hook fires (ReLU's and the activations'
    # full backward pre-hooks only where an in-place op does not hide their input)
    assert fired or name == 'drop_path' or kind == 'full_backward_pre'


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
    seen, = reasons_inside(lambda f: make_fx(f)(x), block)
    assert seen.startswith('a torch dispatch mode is active (ProxyTorchDispatchMode')
    assert reasons_inside(lambda f: torch.func.vmap(f)(x[:, None]), block) == \
        ['a torch.func transform (vmap, grad, jvp, ...)']


def test_torch_compile_traces_through_the_guard_and_runs_the_fused_formula():
    """The compiler must see the whole guard: a graph break inside it would run the rest
    uncompiled, where no compiler is seen (torch 2.1 broke at a getattr on a module).
    Compiling gets the fused formula, in plain ops the compiler fuses; a hook still sends
    the compiled block to the plain path, and torch.export sees the plain graph."""
    block, x = a_block()
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(block)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    with lean_calls() as calls:
        torch.compile(block, backend='eager')(x)
    assert calls == ['formula']
    torch._dynamo.reset()
    handle = block.norm3.register_forward_hook(lambda *args: None)
    with lean_calls() as calls:
        torch.compile(block, backend='eager')(x)
    assert not calls
    handle.remove()
    with lean_calls() as calls:
        torch.export.export(block.eval(), (x,), strict=False)
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
