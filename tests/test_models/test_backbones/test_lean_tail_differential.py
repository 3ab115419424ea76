"""The lean SE tail against the plain path over the whole option space, not hand-picked cases.

Every case builds one narrow SE residual block twice, once as it comes (the lean tail where
the guard allows it) and once with ``lean_tail = False`` (every module called as the plain
formula does), and runs both under the same observer. Outputs, input and parameter
gradients, running statistics, ``num_batches_tracked`` and the calls that hooks see must be
equal; where the guard names a reason, the plain path must really have run; where it names
none, the lean tail must have.

The factors (``FACTORS``) are crossed in two products: the model's options with every
precision and memory format (``NUMERIC``), and the observers with the options that decide
the path (``OBSERVED``). A seeded sample of both runs by default (the seed is printed;
``SEPLUGIN_DIFFERENTIAL_SEED`` repeats a run); ``-m slow`` runs both products whole.
"""
import copy
import itertools
import os
import random
from contextlib import ExitStack

import pytest
import torch
from mmengine.model import revert_sync_batchnorm
from torch import nn
from toy import lean_calls

from seplugin.models import SEResNet, SEResNeXt
from seplugin.models.backbones import se_block

FACTORS = {
    'block': ('basic', 'bottleneck', 'resnext'),
    'squeeze': ('avg', 'max'),
    'gate': ('sigmoid', 'tanh', 'relu', 'hsigmoid'),
    'bias': (True, False),
    'width': ('ratio=4', 'ratio=8', 'squeeze_channels=3'),
    'position': se_block.SE_POSITIONS,
    'with_cp': (False, True),
    'drop_path': (0.0, 0.5),
    'norm': ('BN', 'GN', 'SyncBN reverted'),
    'mode': ('train', 'eval', 'norm_eval', 'frozen'),
    'precision': ('float64', 'bf16 autocast', 'fp16 autocast'),
    'memory_format': ('contiguous', 'channels_last'),
    # the fast tail's eager form where the guard allows one: the fused passes, or the
    # lean tail (fused_tail = False on the blocks)
    'tail': ('fused', 'lean'),
    'observer': ('none', 'a hook on each module', 'global hooks', 'torch.fx',
                 'torch.compile', 'torch.export', 'forward AD', 'vmap'),
}
NUMERIC = [k for k in FACTORS if k != 'observer']
OBSERVED = ['block', 'squeeze', 'position', 'with_cp', 'drop_path', 'norm', 'mode', 'tail',
            'observer']
DEFAULTS = {k: v[0] for k, v in FACTORS.items()}


def valid(case: dict) -> bool:
    # the 3x3 placement needs a bottleneck: a BasicBlock refuses it (tested elsewhere)
    return not (case['block'] == 'basic' and case['position'] == '3x3')


def product(names: list[str]) -> list[dict]:
    """Every valid combination of the named factors, the others at their first level."""
    cases = [{**DEFAULTS, **dict(zip(names, levels))}
             for levels in itertools.product(*(FACTORS[n] for n in names))]
    return [case for case in cases if valid(case)]


NUMERIC_CASES = product(NUMERIC)
OBSERVED_CASES = product(OBSERVED)
SEED = int(os.environ.get('SEPLUGIN_DIFFERENTIAL_SEED', random.SystemRandom().randrange(10**6)))
SAMPLE = 120  # numeric cases in the default run; half as many observed ones


def lean_eligible(case: dict) -> bool:
    """Options under which the guard can allow the lean tail (the rest must go plain)."""
    return (case['position'] == 'standard' and case['norm'] == 'BN'
            and case['squeeze'] == 'avg'
            # stochastic depth runs in training mode (norm_eval and frozen train too)
            and not (case['drop_path'] and case['mode'] != 'eval'))


def sample(cases: list[dict], size: int, salt: int) -> list[dict]:
    """Half from the whole product, half from where the lean tail can run (half of that
    in float64, where the comparison is exact), so that a sample compares the fast tails
    themselves and not mostly the guard's refusals."""
    rng = random.Random(SEED + salt)
    eligible = [case for case in cases if lean_eligible(case)]
    exact = [case for case in eligible if case['precision'] == 'float64']
    return rng.sample(cases, size - size // 2) + rng.sample(eligible, size // 4) \
        + rng.sample(exact, size // 2 - size // 4)


def case_id(case: dict) -> str:
    return ','.join(f'{k}={v}' for k, v in case.items() if v != DEFAULTS[k]) or 'defaults'


def build(case: dict) -> tuple[nn.Module, torch.Tensor]:
    """layer2[0] of a two-stage SE network (a block with a downsample), and its input."""
    torch.manual_seed(0)
    squeeze_key, value = case['width'].split('=')
    se_cfg = dict(squeeze=case['squeeze'], gate=case['gate'], bias=case['bias'])
    ratio = 16
    if squeeze_key == 'ratio':
        ratio = int(value)
    else:
        se_cfg['squeeze_channels'] = int(value)
    norm_cfg = {'BN': dict(type='BN'), 'GN': dict(type='GN', num_groups=2),
                'SyncBN reverted': dict(type='SyncBN')}[case['norm']]
    kwargs = dict(num_stages=2, strides=(1, 2), dilations=(1, 1), out_indices=(0, 1),
                  se_ratio=ratio, se_cfg=se_cfg, se_position=case['position'],
                  drop_path_rate=case['drop_path'], with_cp=case['with_cp'],
                  norm_cfg=norm_cfg, norm_eval=case['mode'] == 'norm_eval',
                  frozen_stages=2 if case['mode'] == 'frozen' else -1)
    if case['block'] == 'resnext':
        model = SEResNeXt(50, groups=2, base_width=4, base_channels=8, **kwargs)
    else:
        model = SEResNet(18 if case['block'] == 'basic' else 50, base_channels=8, **kwargs)
    model = revert_sync_batchnorm(model).double()
    for m in model.modules():
        if isinstance(m, se_block.SEBlockMixin):
            m.fused_tail = case['tail'] == 'fused'
    model.train(case['mode'] != 'eval')
    # a trained network's statistics and affine parameters, not the initial ones
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._NormBase) or isinstance(m, nn.GroupNorm):
            if m.weight is not None:
                nn.init.uniform_(m.weight, 0.5, 1.5)
                nn.init.uniform_(m.bias, -0.5, 0.5)
            if getattr(m, 'running_mean', None) is not None:
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    for m in model.modules():
        if isinstance(m, se_block.SELayer):
            nn.init.normal_(m.conv2.conv.weight, std=0.5)
    block = model.layer2[0]
    x = torch.randn(2, block.conv1.in_channels, 6, 6, dtype=torch.float64)
    if case['precision'] != 'float64':  # the same numbers, rounded: see :func:`compare`
        block, x = block.float(), x.float()
    if case['memory_format'] == 'channels_last':
        block = block.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return block, x


def autocast(case: dict):
    if case['precision'] == 'float64':
        return ExitStack()
    dtype = torch.bfloat16 if case['precision'].startswith('bf16') else torch.float16
    return torch.autocast('cpu', dtype=dtype)


def observe(block: nn.Module, x: torch.Tensor, case: dict) -> dict:
    """Everything the caller of ``block`` can see, under the case's observer."""
    seen: dict = {}
    x = x.clone().requires_grad_()
    observer = case['observer']
    calls: list = []
    handles = []
    if observer == 'a hook on each module':
        for name, module in block.named_modules():
            if name:
                handles.append(module.register_forward_hook(
                    lambda m, a, o, name=name: calls.append(name)))
    elif observer == 'global hooks':
        handles.append(torch.nn.modules.module.register_module_forward_hook(
            lambda m, a, o: calls.append(type(m).__name__)))
    try:
        with lean_calls() as lean, autocast(case):
            torch.manual_seed(1)  # the same stochastic depth draws on both paths
            if observer == 'torch.fx':
                out = torch.fx.symbolic_trace(block)(x)
            elif observer == 'torch.compile':
                torch._dynamo.reset()
                out = torch.compile(block, backend='aot_eager', fullgraph=False)(x)
            elif observer == 'torch.export':
                exported = torch.export.export(block, (x.detach(),), strict=False)
                out = exported.module()(x)
            elif observer == 'forward AD':
                from torch.autograd import forward_ad
                tangent = torch.ones_like(x)
                with forward_ad.dual_level():
                    dual = block(forward_ad.make_dual(x, tangent))
                    out, seen['tangent'] = forward_ad.unpack_dual(dual)
            elif observer == 'vmap':
                out = torch.func.vmap(block, in_dims=1, out_dims=1)(x[:, None])[:, 0]
            else:
                out = block(x)
            if out.requires_grad:
                weight = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
                (out * weight).sum().backward()
    except Exception as error:  # noqa: BLE001 - both paths must fail alike
        return {'error': f'{type(error).__name__}: {str(error).splitlines()[0]}'}
    finally:
        for handle in handles:
            handle.remove()
    seen.update(out=out.detach(), input_grad=x.grad, calls=calls, lean=sorted(set(lean)))
    seen.update((f'grad {n}', p.grad) for n, p in block.named_parameters())
    seen.update((f'buffer {n}', b.clone()) for n, b in block.named_buffers())
    return seen


# Per half-precision case: the median over its tensors of (lean error / plain error)
HALF_PRECISION_RATIOS: dict[str, list[float]] = {'bf16 autocast': [], 'fp16 autocast': []}


def assert_as_good(key: str, case: dict, got: torch.Tensor, plain: torch.Tensor,
                   reference: torch.Tensor | None, ratios: list[float]) -> None:
    """float64: equal to the plain path up to the two orders of operations. Autocast:
    both paths are compared with the float64 plain path. They round differently (the
    lean tail rebuilds ``bn(z)`` in float32 where the plain path rounds it to the half
    type), and in a block this small one rounding can flip a ReLU of the excitation or
    the block, which moves either path's gradients by percents: so each case only bounds
    the lean error (relative L2, within the plain one's + 0.1; a wrong formula is off by
    the tensor's own size, and the float64 cases test the formula exactly), and
    :func:`assert_not_worse_overall` asks the lean tail to be as accurate in the median."""
    if case['precision'] == 'float64':
        torch.testing.assert_close(got, plain, rtol=1e-9, atol=1e-12,
                                   msg=lambda m: f'{key}: {m}')
        return
    reference = reference.double()
    scale = reference.norm().item() or 1.0
    lean_error = (got.double() - reference).norm().item() / scale
    plain_error = (plain.double() - reference).norm().item() / scale
    assert lean_error <= plain_error + 0.1, \
        f'{key}: relative error {lean_error:.3g}, plain path {plain_error:.3g}'
    ratios.append(lean_error / max(plain_error, 1e-7))


def assert_not_worse_overall(cases: list[dict]) -> None:
    """Over the half-precision cases run, the lean tail is not less accurate than the
    plain path: the median of the per-case median error ratios is at most 1.05."""
    for precision, ratios in HALF_PRECISION_RATIOS.items():
        if len(ratios) >= 5:
            ratios = sorted(ratios)
            median = ratios[len(ratios) // 2]
            print(f'  {precision}: median lean/plain error ratio {median:.3f} over '
                  f'{len(ratios)} cases')
            assert median <= 1.05, f'{precision}: median error ratio {median:.3f}'


def check(case: dict) -> str:
    """Runs one case; returns the guard's reason ('' where the lean tail ran)."""
    block, x = build(case)
    plain = copy.deepcopy(block)
    for b in plain.modules():
        if isinstance(b, se_block.SEBlockMixin):
            b.lean_tail = False
    with autocast(case):
        reason = block.why_not_lean_tail(x)
    lean_seen, plain_seen = observe(block, x, case), observe(plain, x, case)
    reference = None
    if case['precision'] != 'float64':
        exact = {**case, 'precision': 'float64'}
        reference_block, reference_x = build(exact)
        reference_block.lean_tail = False
        reference = observe(reference_block, reference_x, exact)
    if 'error' in plain_seen:
        assert lean_seen.get('error') == plain_seen['error']
        return reason or 'the plain path fails alike'
    assert 'error' not in lean_seen, lean_seen['error']
    assert not plain_seen['lean']
    if case['observer'] == 'none':
        # the guard's answer outside any observer decides the path, and the form: the
        # fused kernels take float64 maps (autocast's half-precision ones go lean)
        form = 'fused' if case['tail'] == 'fused' and case['precision'] == 'float64' \
            else 'lean'
        assert lean_seen['lean'] == ([form] if reason == '' else []), reason
    assert lean_seen['calls'] == plain_seen['calls']
    assert lean_seen.keys() == plain_seen.keys()
    ratios: list[float] = []
    for key, ref in plain_seen.items():
        got = lean_seen[key]
        if key in ('calls', 'lean') or (ref is None and got is None):
            continue
        assert got is not None and ref is not None, key
        if ref.is_floating_point():
            assert_as_good(key, case, got, ref, reference and reference[key], ratios)
        else:
            assert torch.equal(got, ref), key
    if ratios and lean_seen['lean']:  # plain against plain tells nothing
        ratios.sort()
        HALF_PRECISION_RATIOS[case['precision']].append(ratios[len(ratios) // 2])
    if lean_seen['lean']:
        return ''
    return reason or 'the plain path (an observer sent the block there)'


def run_cases(cases: list[dict]) -> dict[str, int]:
    """Checks every case; counts the cases per path taken, for the report."""
    for ratios in HALF_PRECISION_RATIOS.values():
        ratios.clear()
    paths: dict[str, int] = {}
    for case in cases:
        try:
            reason = check(case)
        except AssertionError as error:
            raise AssertionError(f'{case_id(case)} (seed {SEED}): {error}') from None
        key = f'fast tail ({case["tail"]})' if not reason else reason.split(' (')[0]
        paths[key] = paths.get(key, 0) + 1
    return paths


def report(name: str, cases: list[dict], paths: dict[str, int]) -> None:
    print(f'\n{name}: {len(cases)} cases (of {len(NUMERIC_CASES)} numeric and '
          f'{len(OBSERVED_CASES)} observed in the products), seed {SEED}')
    for path, n in sorted(paths.items(), key=lambda kv: -kv[1]):
        print(f'  {n:6d}  {path}')
    assert_not_worse_overall(cases)


def test_product_sizes():
    """The products hold every level of every factor (3x3 without BasicBlocks)."""
    assert len(NUMERIC_CASES) == \
        3 * 2 * 4 * 2 * 3 * 2 * 2 * 3 * 4 * 3 * 2 * 2 * (5 * 3 - 1) // 3
    assert len(OBSERVED_CASES) == 2 * 2 * 2 * 3 * 4 * 2 * 8 * (5 * 3 - 1)
    for name in FACTORS:
        seen = {case[name] for case in NUMERIC_CASES + OBSERVED_CASES}
        assert seen == set(FACTORS[name]), name


def test_sampled_numeric_cases_equal_the_plain_path():
    cases = sample(NUMERIC_CASES, SAMPLE, 0)
    paths = run_cases(cases)
    report('numeric sample', cases, paths)
    assert paths.get('fast tail (fused)') and paths.get('fast tail (lean)'), paths


def test_sampled_observed_cases_equal_the_plain_path():
    cheap = [c for c in OBSERVED_CASES if c['observer'] not in ('torch.compile',
                                                                'torch.export')]
    cases = sample(cheap, SAMPLE // 2, 1) + sample(
        [c for c in OBSERVED_CASES if c['observer'] in ('torch.compile', 'torch.export')],
        4, 2)
    report('observed sample', cases, run_cases(cases))


@pytest.mark.slow
@pytest.mark.parametrize('products', ['numeric', 'observed'])
def test_whole_products_equal_the_plain_path(products):
    cases = NUMERIC_CASES if products == 'numeric' else OBSERVED_CASES
    report(f'whole {products} product', cases, run_cases(cases))
