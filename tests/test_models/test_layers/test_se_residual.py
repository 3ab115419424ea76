"""The lean SE tail gives the plain formula's numbers while keeping one map less; the fused
tail keeps no more than the lean one."""
import copy
import os
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seplugin.analysis.memory import PeakTensorMemory, saved_tensor_bytes
from seplugin.models import SEResNet
from seplugin.models.backbones import se_block
from seplugin.models.layers.se_fused_tail import FUSED_TAIL_ENV
from seplugin.models.layers.se_residual import batch_norm_affine, se_residual_relu


def plain_tail(x, gate, identity, bn_input=None, bn_affine=None, compiled=False):
    """The formula as MMPretrain and timm write it; autograd keeps x."""
    return F.relu(x * gate + identity)


@contextmanager
def blocks_using(tail):
    """SE blocks run their standard tail with ``tail`` inside the context (in the lean
    tail's place: the fused tail is off)."""
    original = se_block.se_residual_relu
    se_block.se_residual_relu = tail
    try:
        with fast_tail('lean'):
            yield
    finally:
        se_block.se_residual_relu = original


@contextmanager
def fast_tail(form: str):
    """The SE blocks' fast tail inside the context: 'fused' (the default) or 'lean'."""
    before = os.environ.get(FUSED_TAIL_ENV)
    os.environ[FUSED_TAIL_ENV] = '1' if form == 'fused' else '0'
    try:
        yield
    finally:
        if before is None:
            del os.environ[FUSED_TAIL_ENV]
        else:
            os.environ[FUSED_TAIL_ENV] = before


NORMS = {
    'bn train': lambda: nn.BatchNorm2d(6),
    'bn eval': lambda: nn.BatchNorm2d(6).eval(),
    'bn momentum None': lambda: nn.BatchNorm2d(6, momentum=None),
    'bn no running stats': lambda: nn.BatchNorm2d(6, track_running_stats=False),
    'bn no affine': lambda: nn.BatchNorm2d(6, affine=False),
    'group norm (x is kept)': lambda: nn.GroupNorm(2, 6),
}


def randomise(norm: nn.Module) -> nn.Module:
    torch.manual_seed(1)
    with torch.no_grad():
        for p in norm.parameters():
            p.uniform_(-1.5, 1.5)
        if getattr(norm, 'running_mean', None) is not None:
            norm.running_mean.normal_()
            norm.running_var.uniform_(0.5, 2)
    return norm


def run_tail(tail, norm, z, gate, identity):
    """Output, gradients (z, gate, identity, norm params) and norm buffers of a tail."""
    leaves = [t.detach().clone().requires_grad_() for t in (z, gate, identity)]
    z, gate, identity = leaves
    x, affine = batch_norm_affine(norm, z) if tail is se_residual_relu else (norm(z), None)
    out = tail(x, gate, identity, z, affine)
    weights = torch.randn_like(out)
    params = list(norm.parameters())
    grads = torch.autograd.grad((out * weights).sum(), leaves + params)
    return out, grads, [b.clone() for b in norm.buffers()]


@pytest.mark.parametrize('norm', NORMS.values(), ids=NORMS.keys())
def test_equals_plain_formula_in_float64(norm):
    torch.manual_seed(0)
    z = torch.randn(3, 6, 5, 7, dtype=torch.float64) * 2 + 0.5
    gate = torch.rand(3, 6, 1, 1, dtype=torch.float64)
    identity = torch.randn(3, 6, 5, 7, dtype=torch.float64)
    norm = randomise(norm()).double()
    results = []
    for tail in (se_residual_relu, plain_tail):
        torch.manual_seed(2)
        results.append(run_tail(tail, copy.deepcopy(norm), z, gate, identity))
    (out, grads, buffers), (out_ref, grads_ref, buffers_ref) = results
    assert (out_ref == 0).any() and (out_ref > 0).any()  # the ReLU mask matters
    torch.testing.assert_close(out, out_ref, rtol=1e-12, atol=1e-12)
    for grad, grad_ref in zip(grads, grads_ref):
        torch.testing.assert_close(grad, grad_ref, rtol=1e-10, atol=1e-12)
    for buffer, buffer_ref in zip(buffers, buffers_ref):  # running stats updated once
        torch.testing.assert_close(buffer, buffer_ref, rtol=0, atol=0)


@pytest.mark.parametrize('requires_grad', [False, True])
def test_output_is_one_fused_multiply_add_bit_for_bit(requires_grad):
    """Against x * gate + identity computed in float64 (exact product) rounded once."""
    torch.manual_seed(0)
    x, identity = torch.randn(2, 8, 6, 6), torch.randn(2, 8, 6, 6)
    gate = torch.rand(2, 8, 1, 1)
    once = F.relu((x.double() * gate.double() + identity.double()).float())
    twice = F.relu(x * gate + identity)
    assert not torch.equal(twice, once)  # the test can tell one rounding from two
    out = se_residual_relu(x.clone().requires_grad_(requires_grad), gate, identity)
    assert torch.equal(out, once)


def test_keeps_one_map_less_than_the_plain_formula():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(16)
    z = torch.randn(4, 16, 32, 32, requires_grad=True)
    gate = torch.rand(4, 16, 1, 1, requires_grad=True)
    identity = torch.randn(4, 16, 32, 32, requires_grad=True)

    def fused():
        x, affine = batch_norm_affine(bn, z)
        se_residual_relu(x, gate, identity, z, affine)

    def plain():
        plain_tail(bn(z), gate, identity)

    one_map = z.numel() * z.element_size()
    small = 8 * gate.numel() * gate.element_size()  # gate, statistics, alpha, beta
    difference = saved_tensor_bytes(plain) - saved_tensor_bytes(fused)
    assert one_map - small <= difference <= one_map + small


@pytest.mark.parametrize('form', ['fused', 'lean'])
@pytest.mark.parametrize('memory_format', [torch.contiguous_format, torch.channels_last])
def test_network_keeps_what_resnet_keeps(memory_format, form):
    """SE-ResNet-50's activations kept for backward: the plain formula keeps ~20% more
    than ResNet-50; seplugin's within 1.5% (the gates and pooled features)."""
    torch.manual_seed(0)
    image = torch.randn(2, 3, 96, 96).contiguous(memory_format=memory_format)

    def saved(model):
        model = model.to(memory_format=memory_format).train()
        return saved_tensor_bytes(lambda: sum(o.sum() for o in model(image)).backward(),
                                  ignore=model.parameters())

    plain = saved(SEResNet(50, norm_eval=False, se_stages=(False,) * 4))
    with fast_tail(form):
        lean = saved(SEResNet(50, norm_eval=False))
    with blocks_using(plain_tail):
        formula = saved(SEResNet(50, norm_eval=False))
    assert lean / plain < 1.015
    assert formula / plain > 1.15


@pytest.mark.skipif(not PeakTensorMemory.supported(),
                    reason=f'torch {torch.__version__} does not report storage releases')
@pytest.mark.parametrize('form', ['fused', 'lean'])
def test_peak_memory_over_resnet_does_not_grow_with_the_input(form):
    """Peak live tensor memory of forward + backward: lean SE costs ResNet-50 a constant
    (gradients of its own weights), the plain formula also a share of every activation."""
    def peak(model, size):
        image = torch.randn(2, 3, size, size)
        model.zero_grad(set_to_none=True)  # gradients are new memory in every step counted
        with PeakTensorMemory() as memory:
            sum(o.sum() for o in model.train()(image)).backward()
        return memory.peak

    torch.manual_seed(0)
    plain = SEResNet(50, norm_eval=False, se_stages=(False,) * 4)
    lean = SEResNet(50, norm_eval=False)
    with blocks_using(plain_tail):
        formula = {size: peak(lean, size) for size in (96, 160)}
    with fast_tail(form):
        lean_extra = {size: peak(lean, size) - peak(plain, size) for size in (96, 160)}
    formula_extra = {size: formula[size] - peak(plain, size) for size in (96, 160)}
    se_weights = sum(p.numel() * 4 for n, p in lean.named_parameters() if 'se_layer' in n)
    assert abs(lean_extra[160] - lean_extra[96]) < 2**20
    assert max(lean_extra.values()) < 2 * se_weights + 2**20
    assert formula_extra[160] - formula_extra[96] > 8 * 2**20


def test_block_training_and_inference_equal_plain_formula():
    """Whole network, float64: the lean tail against the formula and the plain module
    path (lean_tail off) in train and eval."""
    torch.manual_seed(0)
    model = SEResNet(50, norm_eval=False, base_channels=8, se_ratio=4).double()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            randomise(m)
    image = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    for mode in (True, False):
        results = []
        # the lean tail, the formula in its place, and the plain module path
        for tail, lean in ((se_residual_relu, True), (plain_tail, True),
                           (se_residual_relu, False)):
            with blocks_using(tail):
                copied = copy.deepcopy(model).train(mode)
                for block in copied.blocks():
                    block.lean_tail = lean
                out = copied(image)[-1]
                out.square().mean().backward()
            results.append((out, [p.grad for p in copied.parameters()],
                            list(copied.buffers())))
        (out, grads, buffers), *references = results
        for out_ref, grads_ref, buffers_ref in references:
            torch.testing.assert_close(out, out_ref, rtol=1e-10, atol=1e-12)
            for grad, grad_ref in zip(grads, grads_ref):
                torch.testing.assert_close(grad, grad_ref, rtol=1e-8, atol=1e-12)
            for buffer, buffer_ref in zip(buffers, buffers_ref):
                torch.testing.assert_close(buffer, buffer_ref, rtol=1e-10, atol=0)


def test_no_grad_inference_equals_autograd_forward():
    torch.manual_seed(0)
    model = SEResNet(50, norm_eval=False, base_channels=8, se_ratio=4).eval()
    image = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        fast = model(image)
    for a, b in zip(fast, model(image)):
        assert torch.equal(a, b)


def block_results(block, x, tail, dtype=None):
    """Output and gradients of one SE block run with the given tail (autocast to dtype)."""
    with blocks_using(tail):
        block = copy.deepcopy(block).train()
        x = x.detach().clone().requires_grad_()
        with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
            out = block(x)
        out.float().square().mean().backward()
    return [out, x.grad] + [p.grad for p in block.parameters()]


def a_block(device='cpu'):
    """layer2[0] of an SE-ResNet-50 (with downsample) and an input for it."""
    torch.manual_seed(0)
    block = SEResNet(50, norm_eval=False, base_channels=16, se_ratio=4).layer2[0].to(device)
    for m in block.modules():
        if isinstance(m, nn.BatchNorm2d):
            randomise(m)
    return block, torch.randn(4, 64, 16, 16, device=device)


def test_channels_last_block_equals_contiguous():
    block, x = a_block()
    contiguous = block_results(block, x, se_residual_relu)
    last = block_results(block.to(memory_format=torch.channels_last),
                         x.contiguous(memory_format=torch.channels_last), se_residual_relu)
    assert last[0].is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(last, contiguous):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_autocast_block_matches_plain_path(dtype):
    """A whole block under autocast: the lean tail and the plain module path agree within
    the dtype's precision, element by element (outputs and every gradient)."""
    if not autocast_runs(dtype):
        pytest.skip(f'{dtype} autocast does not run here')
    block, x = a_block('cuda' if torch.cuda.is_available() else 'cpu')
    fused = block_results(block, x, se_residual_relu, dtype)
    block.lean_tail = False
    plain = block_results(block, x, se_residual_relu, dtype)
    assert fused[0].dtype == dtype
    eps = torch.finfo(dtype).eps
    for a, b in zip(fused, plain):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a.float(), b.float(), rtol=8 * eps, atol=8 * eps)


def test_torch_compile_matches_eager():
    """Compiled, the blocks take the plain path; eager, the lean tail. float64: a BN over
    the 1x1 map of two images amplifies float32 rounding differences too much."""
    torch.manual_seed(0)
    model = SEResNet(18, norm_eval=False, base_channels=8, se_ratio=4).double().train()
    image = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    compiled_model = copy.deepcopy(model)
    compiled = torch.compile(compiled_model, backend='aot_eager')
    for forward in (model, compiled):
        out = forward(image)[-1]
        out.square().mean().backward()
    torch.testing.assert_close(compiled(image)[-1], model(image)[-1])
    for p, q in zip(model.parameters(), compiled_model.parameters()):
        torch.testing.assert_close(p.grad, q.grad)


def saved_storages(fn) -> list[int]:
    """Data pointers of the tensors autograd saves while ``fn`` runs."""
    saved = []

    def pack(tensor):
        saved.append(tensor.untyped_storage().data_ptr())
        return tensor
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn()
    return saved


@pytest.mark.parametrize('norm', [nn.SyncBatchNorm(4).eval(), nn.GroupNorm(2, 4),
                                  nn.Identity()], ids=['syncbn eval', 'group norm', 'none'])
def test_fallbacks_keep_x(norm):
    """SyncBN (statistics of other processes) and non-BN norms: no affine, and the tail
    keeps x for the gate's gradient, which then equals the plain formula's."""
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    gate = torch.rand(2, 4, 1, 1, requires_grad=True)
    identity = torch.randn(2, 4, 3, 3)
    x, affine = batch_norm_affine(norm, z)
    assert affine is None
    torch.testing.assert_close(x, norm(z))
    x_storage, outs = x.untyped_storage().data_ptr(), []
    saved = saved_storages(lambda: outs.append(se_residual_relu(x, gate, identity, z, affine)))
    assert x_storage in saved
    grad, = torch.autograd.grad(outs[0].sum(), gate)
    ref, = torch.autograd.grad(plain_tail(norm(z), gate, identity).sum(), gate)
    torch.testing.assert_close(grad, ref)
    with torch.no_grad():  # nothing to keep: no affine either
        assert batch_norm_affine(nn.BatchNorm2d(4), z)[1] is None


def test_batch_norm_path_keeps_z_not_x():
    bn = nn.BatchNorm2d(4)
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    gate = torch.rand(2, 4, 1, 1, requires_grad=True)
    x, affine = batch_norm_affine(bn, z)
    x_storage = x.untyped_storage().data_ptr()
    saved = saved_storages(lambda: se_residual_relu(x, gate, torch.randn(2, 4, 3, 3), z,
                                                    affine))
    assert z.untyped_storage().data_ptr() in saved
    # x's storage now holds the output (saved for ReLU's backward); x itself is not kept
    assert saved.count(x_storage) == 1


def autocast_runs(dtype) -> bool:
    """Whether autocast to ``dtype`` works on this device, probed on a plain matmul."""
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    try:
        with torch.autocast(device, dtype=dtype):
            torch.mm(torch.ones(2, 2, device=device), torch.ones(2, 2, device=device))
    except RuntimeError:
        return False
    return True


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
@pytest.mark.parametrize('ratio', [0, 1, 10, 100])
def test_autocast_gate_gradient_at_least_as_close_as_plain_formula(dtype, ratio):
    """|mean(z)| / std(z) = ratio: the gate's gradient is never further from a float64
    reference (rounded to the gate's dtype) than the plain formula's, element by element.
    Expanding sum(g * x) as alpha * sum(g * z) + beta * sum(g) fails this from ratio 10."""
    if not autocast_runs(dtype):
        pytest.skip(f'{dtype} autocast does not run here')
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    torch.manual_seed(0)
    bn = randomise(nn.BatchNorm2d(6)).to(device)
    z = (torch.randn(4, 6, 12, 12, device=device) + ratio).to(dtype)
    gate = torch.rand(4, 6, 1, 1, device=device).to(dtype)
    identity = (torch.rand(4, 6, 12, 12, device=device) + 8).to(dtype)  # one ReLU mask
    weights = torch.randn(4, 6, 12, 12, device=device).to(dtype)
    grads = {}
    for name in ('lean', 'plain', 'float64'):
        norm, g = copy.deepcopy(bn), gate.clone().requires_grad_()
        if name == 'float64':
            out = plain_tail(norm.double()(z.double()), g.double(), identity.double())
            out.backward(weights.double())
        else:
            with torch.autocast(device, dtype=dtype):
                if name == 'lean':
                    x, affine = batch_norm_affine(norm, z)
                    out = se_residual_relu(x, g, identity, z, affine)
                else:
                    out = plain_tail(norm(z), g, identity)
            assert out.dtype == dtype
            out.backward(weights)
        grads[name] = g.grad.double()
    lean_error = (grads['lean'] - grads['float64']).abs()
    plain_error = (grads['plain'] - grads['float64']).abs()
    assert (lean_error <= plain_error).all()
    torch.testing.assert_close(grads['lean'], grads['float64'],
                               rtol=torch.finfo(dtype).eps, atol=1e-3)


def cpu_conv_runs(dtype) -> bool:
    """Whether this torch has CPU convolutions in ``dtype`` (torch 2.1 has none in float16),
    probed on a plain conv2d."""
    try:
        F.conv2d(torch.ones(1, 1, 2, 2, dtype=dtype), torch.ones(1, 1, 1, 1, dtype=dtype))
    except RuntimeError:
        return False
    return True


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_squeeze_of_a_large_half_map_does_not_overflow(dtype):
    """An 800x1333 image at stride 4 is a 200x334 map: 66,800 elements, and a float16 sum
    of values ~1.5 overflows (65,504)."""
    if not cpu_conv_runs(dtype):
        pytest.skip(f'torch {torch.__version__} has no CPU conv2d in {dtype}')
    from seplugin.models import SELayer
    torch.manual_seed(0)
    se = SELayer(16, ratio=4)
    x = torch.rand(1, 16, 200, 334) + 1
    expected = se.gate(x)
    se = se.to(dtype)
    for gate in (se.gate, se.lean_gate):
        out = gate(x.to(dtype)).float()
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, expected, rtol=4 * torch.finfo(dtype).eps,
                                   atol=4 * torch.finfo(dtype).eps)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('lean', [True, False], ids=['lean', 'plain'])
def test_half_precision_block_inference_on_a_detection_sized_map(dtype, lean):
    """``model.half()`` / bf16 inference of a stride-4 block (256 channels) on the map of
    an 800x1333 image: finite, and equal to float32 within the dtype's precision."""
    if not cpu_conv_runs(dtype):
        pytest.skip(f'torch {torch.__version__} has no CPU conv2d in {dtype}')
    torch.manual_seed(0)
    block = SEResNet(50, norm_eval=False).layer1[1].eval()
    randomise(block.norm3)
    block.lean_tail = lean
    x = torch.rand(1, 256, 200, 334)
    with torch.no_grad():
        expected = block(x)
        out = copy.deepcopy(block).to(dtype)(x.to(dtype)).float()
    assert torch.isfinite(out).all()
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(out, expected, rtol=8 * eps, atol=8 * eps)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
def test_cuda_matches_cpu():
    torch.manual_seed(0)
    model = SEResNet(50, norm_eval=False, base_channels=8, se_ratio=4).train()
    image = torch.randn(2, 3, 64, 64)
    cpu = model(image)[-1]
    gpu = copy.deepcopy(model).cuda()(image.cuda())[-1]
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=1e-4)
