"""The fused SE tail (two passes each way) against the plain formula and float64."""
import copy

import pytest
import torch
from torch import nn
from toy import lean_calls, without_a_compiler

from seplugin.models import SEResNet
from seplugin.models.layers import se_fused_tail
from seplugin.models.layers.se_fused_tail import fused_tail, fused_tail_formula, kernels
from seplugin.models.layers.se_layer import SELayer

NORMS = {
    'train': lambda c: nn.BatchNorm2d(c),
    'eval': lambda c: nn.BatchNorm2d(c).eval(),
    'momentum None': lambda c: nn.BatchNorm2d(c, momentum=None),
    'no running stats': lambda c: nn.BatchNorm2d(c, track_running_stats=False),
    'no running stats, eval': lambda c: nn.BatchNorm2d(c, track_running_stats=False).eval(),
    'no affine': lambda c: nn.BatchNorm2d(c, affine=False),
}
FORMATS = {'contiguous': torch.contiguous_format, 'channels_last': torch.channels_last}


def plain(z, identity, bn, se):
    """The formula as MMPretrain and timm write it."""
    return torch.relu(se(bn(z)) + identity)


def parts(norm: str, dtype=torch.float64, gate='sigmoid', bias=True, shift=0.0,
          memory_format='contiguous', size=(3, 12, 5, 7)):
    torch.manual_seed(0)
    n, c, h, w = size
    bn = NORMS[norm](c).to(dtype)
    with torch.no_grad():
        if bn.weight is not None:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
        if bn.running_mean is not None:
            bn.running_mean.uniform_(-1, 1).add_(shift)
            bn.running_var.uniform_(0.5, 2)
    se = SELayer(c, ratio=4, gate=gate, bias=bias).to(dtype)
    nn.init.normal_(se.conv2.conv.weight, std=0.5)
    layout = FORMATS[memory_format]
    z = (torch.randn(size, dtype=dtype) * 2 + shift).contiguous(memory_format=layout)
    identity = torch.randn(size, dtype=dtype).contiguous(memory_format=layout)
    return z, identity, bn, se


def seen(tail, z, identity, bn, se):
    """Output, every gradient and BN's buffers after one forward and backward."""
    bn, se = copy.deepcopy(bn), copy.deepcopy(se)
    z, identity = z.clone().requires_grad_(), identity.clone().requires_grad_()
    out = tail(z, identity, bn, se)
    out.backward(torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out))
    result = {'out': out.detach(), 'z': z.grad, 'identity': identity.grad}
    result.update((f'bn {k}', p.grad) for k, p in bn.named_parameters())
    result.update((f'se {k}', p.grad) for k, p in se.named_parameters())
    result.update((f'buffer {k}', b) for k, b in bn.named_buffers())
    return result


def fused(z, identity, bn, se):
    return fused_tail(z, identity, bn, se, kernels())


@pytest.fixture(autouse=True)
def built():
    if kernels() is None:  # the build's failure is an error here, not a skip
        pytest.fail(f'the fused kernels did not build: {se_fused_tail.kernels_state()}')


@pytest.mark.parametrize('memory_format', FORMATS)
@pytest.mark.parametrize('norm', NORMS)
@pytest.mark.parametrize('gate, bias', [('sigmoid', True), ('relu', False), ('tanh', True),
                                        ('hsigmoid', False)])
def test_equals_the_plain_formula_in_float64(norm, gate, bias, memory_format):
    """Outputs, gradients of the map, the shortcut, BN's and the FCs' parameters, running
    statistics and num_batches_tracked: the plain formula's, in float64; and the same for
    the formula the compiler gets."""
    args = parts(norm, gate=gate, bias=bias, memory_format=memory_format)
    reference = seen(plain, *args)
    for tail in (fused, fused_tail_formula):
        got = seen(tail, *args)
        assert got.keys() == reference.keys()
        for key, value in reference.items():
            if value is None:
                assert got[key] is None, key
            else:
                torch.testing.assert_close(got[key], value, rtol=1e-10, atol=1e-12,
                                           msg=lambda m, key=key: f'{key}: {m}')
    assert seen(fused, *args)['out'].is_contiguous(memory_format=FORMATS[memory_format])


def relative_error(got: torch.Tensor, reference: torch.Tensor) -> float:
    reference = reference.double()
    return ((got.double() - reference).norm() / reference.norm()).item()


@pytest.mark.parametrize('norm', ['train', 'eval'])
@pytest.mark.parametrize('ratio', [0, 1, 10, 100])
def test_float32_at_least_as_close_to_float64_as_the_plain_formula(ratio, norm):
    """|mean(z)| / std(z) = ratio: the fused tail's output and gradients are within
    float64 as closely as the plain formula's (the sums accumulate in float64 and z - mu
    is formed before scaling, so a large mean does not cancel)."""
    z, identity, bn, se = parts(norm, dtype=torch.float32, shift=2.0 * ratio,
                                size=(4, 16, 12, 12))
    exact = seen(plain, z.double(), identity.double(), copy.deepcopy(bn).double(),
                 copy.deepcopy(se).double())
    ours, theirs = seen(fused, z, identity, bn, se), seen(plain, z, identity, bn, se)
    for key, reference in exact.items():
        if reference is None or not reference.is_floating_point() or not reference.any():
            continue
        error, plain_error = relative_error(ours[key], reference), \
            relative_error(theirs[key], reference)
        assert error <= max(2 * plain_error, 4 * torch.finfo(torch.float32).eps), \
            f'{key}: {error:.3g} vs {plain_error:.3g}'


def test_inference_without_autograd_equals_the_autograd_forward():
    z, identity, bn, se = parts('eval', dtype=torch.float32)
    with torch.no_grad():
        quiet = fused(z, identity, bn, se)
    with torch.inference_mode():
        inference = fused(z, identity, bn, se)
    assert torch.equal(quiet, seen(fused, z, identity, bn, se)['out'])
    assert torch.equal(inference, quiet)
    torch.testing.assert_close(quiet, plain(z, identity, bn, se))


def test_double_backward_names_the_switch():
    z, identity, bn, se = parts('train')
    z.requires_grad_()
    grad, = torch.autograd.grad(fused(z, identity, bn, se).square().sum(), z,
                                create_graph=True)
    with pytest.raises(RuntimeError, match='no double backward .*SEPLUGIN_LEAN_TAIL=0'):
        grad.square().sum().backward()


def a_block() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = SEResNet(50, base_channels=8, se_ratio=4, num_stages=1, out_indices=(0,),
                     strides=(1,), dilations=(1,),
                     norm_eval=False).train()
    return model.layer1[0], torch.randn(2, 8, 8, 8)


def test_the_block_takes_the_fused_tail_where_it_can_and_says_why_not():
    block, x = a_block()
    z = torch.randn(2, 32, 8, 8)
    assert block.why_not_fused_tail(z, z) == ''
    with lean_calls() as calls:
        block(x)
    assert calls == ['fused']
    assert 'bfloat16' in block.why_not_fused_tail(z.bfloat16(), z.bfloat16())
    assert 'layout' in block.why_not_fused_tail(
        z, z.contiguous(memory_format=torch.channels_last))
    assert 'neither' in block.why_not_fused_tail(z[..., ::2], z[..., ::2])
    block.fused_tail = False
    assert block.why_not_fused_tail(z, z) == 'switched off: fused_tail is False'
    with lean_calls() as calls:
        block(x)
    assert calls == ['lean']
    block.fused_tail, block.compiled_tail = True, True
    assert 'compiled_tail' in block.why_not_fused_tail(z, z)


def test_environment_switch(monkeypatch):
    block, x = a_block()
    z = torch.randn(2, 32, 8, 8)
    monkeypatch.setenv('SEPLUGIN_FUSED_TAIL', '0')
    assert block.why_not_fused_tail(z, z) == 'switched off: SEPLUGIN_FUSED_TAIL=0'
    monkeypatch.setenv('SEPLUGIN_FUSED_TAIL', 'maybe')
    with pytest.raises(ValueError, match="SEPLUGIN_FUSED_TAIL='maybe' is not understood"):
        block(x)


def test_one_value_per_channel_fails_as_batch_norm_does():
    z, identity, bn, se = parts('train', size=(1, 12, 1, 1))
    with pytest.raises(ValueError) as theirs:
        plain(z, identity, bn, se)
    with pytest.raises(ValueError) as ours:
        fused(z, identity, bn, se)
    assert str(ours.value) == str(theirs.value)


def test_without_a_compiler_the_lean_tail_runs_after_one_warning(tmp_path):
    """No C++ compiler and an empty extension cache: one warning naming the cause and the
    switch, and the lean tail's numbers."""
    code = """
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    fallback = grads()
    grads()
ours = [str(w.message) for w in caught if 'fused SE tail' in str(w.message)]
assert len(ours) == 1, ours
print(ours[0])
for m in model.modules():
    if hasattr(m, 'fused_tail'):
        m.fused_tail = False
assert all(torch.equal(a, b) for a, b in zip(grads(), fallback))
"""
    stdout = without_a_compiler(tmp_path, code)
    assert 'the lean tail runs instead' in stdout
    assert 'SEPLUGIN_FUSED_TAIL=0' in stdout
