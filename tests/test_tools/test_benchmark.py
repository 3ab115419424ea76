"""tools/benchmark.py and seplugin.analysis.benchmark: the comparisons drawn, their
intervals, the compiled rows, and one tiny run of all of it."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tool_runs import load_tool

from seplugin.analysis import benchmark

REPO = Path(__file__).parents[2]

SEPLUGIN, PLAIN = 'seplugin SE-ResNet-50', 'ResNet-50 (mmdet, what seplugin extends)'


def test_ratios_and_targets():
    seconds = {SEPLUGIN: 1.02, PLAIN: 1.0, 'mmpretrain SE-ResNet-50': 1.2,
               'mmpretrain ResNet-50': 1.1, 'timm seresnet50': 1.01, 'timm resnet50': 0.9,
               benchmark.CONTROL: 0.99}
    results = {'memory': {SEPLUGIN: dict(peak=104, saved=101), PLAIN: dict(peak=100, saved=100)},
               'seconds': {'training step': seconds,
                           'detector inference': {'Faster R-CNN SE-R50-FPN': 2.0,
                                                  'Faster R-CNN R50-FPN': 2.0}}}
    rows = {(r['measure'], r['model']): r for r in benchmark.ratios(results)}
    peak = rows['peak training-step tensor memory', SEPLUGIN]
    assert peak['ratio'] == pytest.approx(1.04) and peak['target'] == 1.02
    assert rows['training step', SEPLUGIN]['ratio'] == pytest.approx(1.02)
    assert rows['training step', 'timm seresnet50']['ratio'] == pytest.approx(1.01 / 0.9)
    assert rows['training step', 'timm seresnet50']['target'] is None  # peers: context
    fastest = rows['training step', 'seplugin / fastest peer SE-ResNet-50']
    assert fastest['ratio'] == pytest.approx(1.02 / 1.01) and fastest['target'] == 1.0
    assert rows['detector inference', 'Faster R-CNN SE-R50-FPN / R50-FPN']['ratio'] == 1.0
    control = rows['training step', benchmark.CONTROL_ROW]
    assert control['ratio'] == pytest.approx(0.99) and control['target'] is None
    report = benchmark.report(dict(results, machine='m', batch=8, size=224, repeats=3), list(
        rows.values()))
    assert ('| peak training-step tensor memory | seplugin SE-ResNet-50 | 1.040 | exact '
            '| <= 1.02 | NO |') in report
    assert '| training step | seplugin SE-ResNet-50 | 1.020 |  | <= 1.03 | yes |' in report


def test_round_ratios_cancel_machine_noise():
    """Rounds slow for every model (machine noise, 30%) cancel in each round's ratio: the
    interval covers the true ratio and is narrow; rounds paired wrongly give none such."""
    import numpy as np
    rng = np.random.default_rng(1)
    plain = 0.5 * rng.lognormal(0, 0.3, 25)
    se = 1.05 * plain * rng.normal(1, 0.005, 25)
    ratio, (low, high), coverage = benchmark.round_ratios(list(se), list(plain))
    assert ratio == pytest.approx(np.median(se / plain))
    assert low < 1.05 < high and high - low < 0.01
    assert coverage >= 0.95
    _, (low, high), _ = benchmark.round_ratios(list(se), list(rng.permutation(plain)))
    assert high - low > 0.1
    assert benchmark.round_ratios([1.0], [2.0]) == (0.5, None, None)
    with pytest.raises(ValueError, match='3 SE and 2 plain samples'):
        benchmark.round_ratios([1.0] * 3, [1.0] * 2)


def test_median_ranks_by_hand():
    """13 rounds: ranks 3..11. Below the median lie B ~ binomial(13, 1/2) of them, and
    [x_(3), x_(11)] misses it when B <= 2 or B >= 11: 2 * (1 + 13 + 78) / 2**13 = 184/8192,
    coverage 8008/8192 = 0.9775; ranks 4..10 would cover 1 - 2 * 378/8192 = 0.908 only."""
    j, k, coverage = benchmark.median_ranks(13)
    assert (j, k) == (3, 11)
    assert coverage == pytest.approx(8008 / 8192) and round(coverage, 4) == 0.9775
    assert benchmark.median_ranks(15)[:2] == (4, 12)  # 1 - 2 * 576/32768 = 0.965
    assert benchmark.median_ranks(6) == (1, 6, pytest.approx(1 - 2 / 64))
    j, k, coverage = benchmark.median_ranks(5)  # too few: the whole range, 93.75% only
    assert (j, k, coverage) == (1, 5, pytest.approx(0.9375))
    assert benchmark.median_interval([5, 1, 4, 2, 3, 9, 8, 7, 6, 13, 12, 11, 10]) == \
        (3.0, 11.0, pytest.approx(8008 / 8192))
    with pytest.raises(ValueError, match='n=0: expected a positive number'):
        benchmark.median_ranks(0)


@pytest.mark.parametrize('n', [12, 13, 15])
def test_median_interval_covers_a_known_median(n):
    """2000 draws of ``n`` log-normal ratios (median exp(0.05)): the interval holds at
    least 95% (a percentile bootstrap of the median falls short at these n)."""
    rng = np.random.default_rng(0)
    true_median = np.exp(0.05)
    draws = rng.lognormal(0.05, 0.04, (2000, n))
    hits = [low <= true_median <= high
            for low, high, _ in map(benchmark.median_interval, draws)]
    assert np.mean(hits) >= 0.95, np.mean(hits)


def test_a_target_is_met_by_the_intervals_upper_end():
    row = dict(measure='training step', model=SEPLUGIN, ratio=1.02, target=1.03)
    assert benchmark.met(dict(row, interval=(1.01, 1.029)))
    assert not benchmark.met(dict(row, interval=(1.01, 1.031)))  # the ratio alone would pass
    assert benchmark.met(dict(row, interval=None))  # exact (memory): the ratio itself
    assert benchmark.met(dict(row, target=None, interval=None)) is None


def test_gpu_mode_says_it_is_skipped_without_a_gpu():
    import torch
    if torch.cuda.is_available():
        pytest.skip('there is a GPU: --device cuda would run the benchmark')
    out = subprocess.run([sys.executable, 'tools/benchmark.py', '--device', 'cuda'],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'no CUDA GPU here' in out.stdout and 'skipped' in out.stdout


def test_kept_freed_memory_stops_page_faults_between_models():
    """What keep_freed_memory is for: interleaved models settle, with no page faults.

    Page faults per round of four unlike allocations (4-20 MB). With memory kept the heap
    settles within a few rounds (how many depends on where the first blocks landed) and
    then faults nothing; with the system default every round faults pages in again.
    """
    code = """
import resource, sys, torch
from seplugin.analysis import benchmark
kept = sys.argv[1] == 'kept' and benchmark.keep_freed_memory()
sizes = [(3, 2**20), (5, 2**20 - 8), (2**21,), (7, 2**19 + 3)]
faults = []
for _ in range(20):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for size in sizes:
        torch.ones(size)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(kept, *faults)
"""
    runs = {mode: subprocess.run([sys.executable, '-c', code, mode], capture_output=True,
                                 text=True, check=True).stdout.split()
            for mode in ('kept', 'system')}
    assert runs['kept'][0] == 'True'
    kept, system = ([int(n) for n in runs[mode][1:]] for mode in ('kept', 'system'))
    assert max(kept[-8:]) < 100, kept  # settled: a few pages of Python's own at most
    assert min(system[1:]) > 1000, system  # never settles: megabytes of pages every round


def check_kept_memory(results: dict) -> None:
    """What each model keeps for backward, from the benchmark's memory results."""
    memory = {name: m['saved'] for name, m in results['memory'].items()}
    # the peers keep one more map per block, the SE input (64x64 input, batch 1); seplugin
    # keeps per-channel numbers instead: the lean tail two float32 (BN's alpha and beta),
    # the fused tail a float32 deviation and two float64 statistics, and no FC inputs
    stages = [(3, 256, 4), (4, 512, 8), (6, 1024, 16), (3, 2048, 32)]
    maps = sum(blocks * 4 * channels * (64 // stride) ** 2 for blocks, channels, stride in stages)
    alpha_beta = sum(blocks * 2 * 4 * channels for blocks, channels, _ in stages)
    assert memory['mmpretrain SE-ResNet-50'] - memory[benchmark.LEAN] == maps - alpha_beta
    per_channel = sum(blocks * channels for blocks, channels, _ in stages)
    assert abs(memory['mmpretrain SE-ResNet-50'] - memory[SEPLUGIN] - maps) \
        <= 20 * per_channel
    assert memory['mmpretrain SE-ResNet-50'] == memory['timm seresnet50']


@pytest.mark.slow  # 100 s: every measurement; the memory run below is the fast check
def test_tiny_run_of_every_measurement(tmp_path):
    out = subprocess.run(
        [sys.executable, 'tools/benchmark.py', '--batch', '1', '--size', '64', '--repeats',
         '2', '--warmup', '0', '--det-batch', '1', '--det-size', '96', '--det-repeats', '2',
         '--compiled-tail', '--json', str(tmp_path / 'r.json'), '--plot',
         str(tmp_path / 'r.png')],
        capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / 'r.json').read_text())
    assert set(results['seconds']) == {
        'inference (contiguous)', 'inference (channels_last)', 'training step',
        'detector training iteration', 'detector inference'}
    # the six models, the identical copy of ResNet-50 that shows the resolution and, in
    # training only, seplugin's with the compiled tail
    assert set(results['seconds']['training step']) == {
        *benchmark.SE_MODELS, *benchmark.SE_MODELS.values(),
        benchmark.CONTROL} - set(benchmark.COMPILED_MODELS)  # those: --compiled-models
    assert benchmark.COMPILED not in results['seconds']['inference (contiguous)']
    assert results['compile_seconds'] > 0
    assert results['compiled_tail_state'] in ('compiled', 'fallback')
    assert benchmark.CONTROL not in results['memory']
    control = [r for r in results['ratios'] if r['model'] == benchmark.CONTROL_ROW]
    assert [r['measure'] for r in control] == [
        'inference (contiguous)', 'inference (channels_last)', 'training step']
    assert results['malloc'] == 'freed memory kept for reuse'
    assert 'malloc: freed memory kept for reuse' in out.stdout
    check_kept_memory(results)
    assert (tmp_path / 'r.png').read_bytes()[:4] == b'\x89PNG'
    assert '| measurement | ratio | value | 95% interval | target | met |' in out.stdout
    assert 'intervals: distribution-free confidence interval of the median' in out.stdout
    assert '2 rounds: ranks 1..2, coverage 50.0% (below 95%: too few rounds)' in out.stdout
    timed_rows = [r for r in results['ratios'] if r['measure'] in results['seconds']]
    for r in timed_rows:  # two rounds: the interval spans their two ratios
        assert r['interval'][0] <= r['ratio'] <= r['interval'][1]
    assert {r['measure'] for r in timed_rows} == set(results['seconds'])
    assert results['machine'] in out.stdout


def test_memory_run_with_glibc_defaults_counts_the_maps_each_model_keeps(tmp_path):
    out = subprocess.run(
        [sys.executable, 'tools/benchmark.py', '--measure', 'memory', '--batch', '1',
         '--size', '64', '--system-malloc', '--json', str(tmp_path / 'r.json')],
        capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / 'r.json').read_text())
    assert results['malloc'] == 'system default'
    assert 'malloc: system default' in out.stdout
    check_kept_memory(results)


def test_the_tool_offers_the_packages_measurements():
    tool = load_tool('benchmark')
    assert tool.MEASUREMENTS == benchmark.MEASUREMENTS
    args = tool.parse_args(['--compiled-models', '--repeats', '3'])
    assert args.compiled_models and args.repeats == 3 and not args.compiled_tail
    for bad, message in ((['--repeats', '0'], '0: expected an integer >= 1'),
                         (['--warmup', 'x'], "'x' is not an integer")):
        out = subprocess.run([sys.executable, 'tools/benchmark.py', *bad], cwd=REPO,
                             capture_output=True, text=True)
        assert out.returncode == 2 and message in out.stderr


def timed_results(names: dict, **extra) -> dict:
    """Results of a 'training step' measurement with 13 rounds, each model's seconds the
    given multiple of ResNet-50's (1 s) in every round."""
    samples = {name: [factor] * 13 for name, factor in names.items()}
    return dict(machine='m', batch=8, size=224, repeats=13, memory={},
                seconds={'training step': {n: s[0] for n, s in samples.items()}},
                samples={'training step': samples}, **extra)


@pytest.mark.parametrize('state, label', [
    ('compiled', benchmark.COMPILED),
    ('fallback', f'{benchmark.COMPILED} requested, NOT compiled: eager fallback ran'),
    ('unused', f'{benchmark.COMPILED} requested, NOT run: the compiled backward was never '
               'called (eager)')])
def test_compiled_tail_row_says_what_ran(monkeypatch, state, label):
    """The state is read from se_residual after the timed steps; a fallback is not called
    compiled, in the ratio row or in the seconds table."""
    from seplugin.models.layers import se_residual
    monkeypatch.setattr(se_residual, 'compiled_tail_state', lambda: state)
    results = timed_results({SEPLUGIN: 1.1, benchmark.COMPILED: 1.05, PLAIN: 1.0},
                            compile_seconds=6.0)
    benchmark.record_compiled_tail(results)
    assert results['compiled_tail_state'] == state
    rows = benchmark.ratios(results)
    tail = [r for r in rows if r['ratio'] == pytest.approx(1.05)]
    assert [r['model'] for r in tail] == [label]
    report = benchmark.report(results, rows)
    assert f'| training step | {label} | 1050 ms |' in report
    assert f"its state is '{state}'" in report
    if state != 'compiled':
        assert f'| {benchmark.COMPILED} |' not in report
    with pytest.raises(ValueError, match="state 'maybe': expected one of"):
        benchmark.compiled_tail_label('maybe')


def test_compiled_models_rows_and_compile_time():
    """Both models compiled: their ratio to each other (not to the eager ResNet-50), with
    an interval and seplugin's target; compile times reported apart."""
    se, plain = benchmark.COMPILED_MODELS
    results = timed_results({SEPLUGIN: 1.1, PLAIN: 1.0, se: 0.84, plain: 0.8,
                             benchmark.CONTROL: 1.0},
                            model_compile_seconds={'training step': {se: 41.5, plain: 38.0}})
    rows = {r['model']: r for r in benchmark.ratios(results)}
    assert rows[se]['ratio'] == pytest.approx(0.84 / 0.8)
    assert rows[se]['interval'] == pytest.approx((1.05, 1.05))
    assert rows[se]['target'] == benchmark.TARGET
    assert benchmark.SE_MODELS[se] == plain and plain not in rows
    assert rows[benchmark.CONTROL_ROW]['ratio'] == 1.0  # the control stays
    report = benchmark.report(results, list(rows.values()))
    assert (f'torch.compile, training step: first call (compiling, not timed) {se} 41.5 s, '
            f'{plain} 38.0 s') in report
    assert f'| training step | {se} | 1.050 | 1.050-1.050 | <= 1.03 | NO |' in report


@pytest.mark.slow
def test_compiled_calls_of_tiny_models():
    """torch.compile of two tiny classifiers (base width 4, 32x32): the compiled calls
    give the eager models' outputs and training steps, and the first call is timed apart
    (tens of seconds of compiling on a CPU)."""
    import copy

    import torch
    from mmdet.models.backbones import ResNet
    from torch import nn

    from seplugin.models.backbones import SEResNet

    class Tiny(nn.Module):
        def __init__(self, backbone):
            super().__init__()
            self.backbone, self.fc = backbone, nn.Linear(128, 10)

        def forward(self, x):  # the backbones return a tuple of stages
            return self.fc(self.backbone(x)[0].mean((2, 3)))

    torch.manual_seed(0)
    kw = dict(depth=50, base_channels=4, stem_channels=4, out_indices=(3,), norm_eval=False)
    models = {SEPLUGIN: Tiny(SEResNet(**kw)), PLAIN: Tiny(ResNet(**kw))}
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([1, 2])
    calls, seconds = benchmark.compiled_calls(models, 'inference', images)
    assert set(calls) == set(seconds) == set(benchmark.COMPILED_MODELS)
    assert all(s > 0 for s in seconds.values())
    for name, source in benchmark.COMPILED_MODELS.items():
        with torch.no_grad():
            expected = models[source].eval()(images)
        torch.testing.assert_close(calls[name](), expected, rtol=1e-4, atol=1e-5)
    eager = copy.deepcopy(models)
    steps, seconds = benchmark.compiled_calls(models, 'training', images, labels)
    assert set(steps) == set(benchmark.COMPILED_MODELS) and all(s > 0 for s in seconds.values())
    for step in steps.values():
        step()
    with pytest.raises(ValueError, match="mode 'test': expected 'inference' or 'training'"):
        benchmark.compiled_calls(models, 'test', images)
    assert all(torch.equal(a, b) for a, b in zip(models[PLAIN].parameters(),
                                                 eager[PLAIN].parameters()))  # copies
