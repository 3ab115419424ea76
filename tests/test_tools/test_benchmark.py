"""tools/benchmark.py: the comparisons it draws and one tiny run of all of it."""
import importlib.util
import json
import subprocess
import sys

import pytest

spec = importlib.util.spec_from_file_location('benchmark', 'tools/benchmark.py')
benchmark = importlib.util.module_from_spec(spec)
spec.loader.exec_module(benchmark)

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
    assert peak['ratio'] == pytest.approx(1.04) and peak['target'] == 1.03
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
            '| <= 1.03 | NO |') in report
    assert '| training step | seplugin SE-ResNet-50 | 1.020 |  | <= 1.03 | yes |' in report


def test_round_ratios_cancel_machine_noise():
    """Rounds slow for every model (machine noise, 30%) cancel in each round's ratio: the
    interval covers the true ratio and is narrow; rounds paired wrongly give none such."""
    import numpy as np
    rng = np.random.default_rng(1)
    plain = 0.5 * rng.lognormal(0, 0.3, 25)
    se = 1.05 * plain * rng.normal(1, 0.005, 25)
    ratio, (low, high) = benchmark.round_ratios(list(se), list(plain))
    assert ratio == pytest.approx(np.median(se / plain))
    assert low < 1.05 < high and high - low < 0.01
    _, (low, high) = benchmark.round_ratios(list(se), list(rng.permutation(plain)))
    assert high - low > 0.1
    assert benchmark.round_ratios([1.0], [2.0]) == (0.5, None)


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
sys.path.insert(0, 'tools')
import benchmark
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
        *benchmark.SE_MODELS, *benchmark.SE_MODELS.values(), benchmark.CONTROL}
    assert benchmark.COMPILED not in results['seconds']['inference (contiguous)']
    assert results['compile_seconds'] > 0
    assert benchmark.CONTROL not in results['memory']
    control = [r for r in results['ratios'] if r['model'] == benchmark.CONTROL_ROW]
    assert [r['measure'] for r in control] == [
        'inference (contiguous)', 'inference (channels_last)', 'training step']
    assert results['malloc'] == 'freed memory kept for reuse'
    assert 'malloc: freed memory kept for reuse' in out.stdout
    memory = {name: m['saved'] for name, m in results['memory'].items()}
    # the peers keep one more map per block, the SE input (64x64 input, batch 1); seplugin
    # keeps two numbers per channel instead (the BN's alpha and beta)
    stages = [(3, 256, 4), (4, 512, 8), (6, 1024, 16), (3, 2048, 32)]
    maps = sum(blocks * 4 * channels * (64 // stride) ** 2 for blocks, channels, stride in stages)
    alpha_beta = sum(blocks * 2 * 4 * channels for blocks, channels, _ in stages)
    assert memory['mmpretrain SE-ResNet-50'] - memory[SEPLUGIN] == maps - alpha_beta
    assert memory['mmpretrain SE-ResNet-50'] == memory['timm seresnet50']
    assert (tmp_path / 'r.png').read_bytes()[:4] == b'\x89PNG'
    assert '| measurement | ratio | value | 95% interval | target | met |' in out.stdout
    timed_rows = [r for r in results['ratios'] if r['measure'] in results['seconds']]
    for r in timed_rows:  # two rounds: the interval spans their two ratios
        assert r['interval'][0] <= r['ratio'] <= r['interval'][1]
    assert {r['measure'] for r in timed_rows} == set(results['seconds'])
    assert results['machine'] in out.stdout


def test_system_malloc_flag_leaves_glibc_defaults(tmp_path):
    out = subprocess.run(
        [sys.executable, 'tools/benchmark.py', '--measure', 'memory', '--batch', '1',
         '--size', '64', '--system-malloc', '--json', str(tmp_path / 'r.json')],
        capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads((tmp_path / 'r.json').read_text())['malloc'] == 'system default'
    assert 'malloc: system default' in out.stdout
