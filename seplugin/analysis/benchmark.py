"""What SE costs in time and memory, as ``tools/benchmark.py`` measures and reports it.

All models of a measurement run interleaved in one process, each round in a new random
order, so machine noise falls on all of them alike. A time ratio is the median over the
rounds of each round's ratio (a busy round slows both models and cancels), with a
distribution-free confidence interval of that median from order statistics
(:func:`median_interval`); a target is met when the interval's upper end is within it. An
identical copy of ResNet-50 runs as one more model (the A/A control): how far its ratio
is from 1 is the resolution of the measurement. Memory is exact: the peak of the tensor
storages created during one training step, and the storages autograd keeps for backward.
"""
from __future__ import annotations

import copy
import ctypes
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import nn

from seplugin.analysis.complexity import build_from_config, classifier, time_interleaved
from seplugin.analysis.memory import PeakTensorMemory, saved_tensor_bytes
from seplugin.models.layers import se_fused_tail, se_residual

MEASUREMENTS = ('memory', 'inference', 'training', 'detection')
TARGET = 1.03  # SE / plain, for the times without a target of their own
TARGETS = {'inference (contiguous)': 1.02, 'inference (channels_last)': 1.02,
           'detector training iteration': 1.01}
MEMORY_TARGET = 1.02  # peak training-step memory, SE / plain
CONFIDENCE = 0.95
INTERVAL_METHOD = ('distribution-free confidence interval of the median of the per-round '
                   'ratios: order statistics at ranks from the binomial(n, 1/2) '
                   'distribution, actual coverage at least the nominal')
COMPILED = 'seplugin SE-ResNet-50, compiled tail'
LEAN = 'seplugin SE-ResNet-50, lean tail (fused tail off)'  # what the fused tail replaces
# torch.compile(model) of both models (--compiled-models): compiled name, eager model
COMPILED_MODELS = {'seplugin SE-ResNet-50, torch.compile': 'seplugin SE-ResNet-50',
                   'ResNet-50 (mmdet), torch.compile': 'ResNet-50 (mmdet, what seplugin extends)'}
SE_MODELS = {  # SE model: its plain counterpart
    'seplugin SE-ResNet-50': 'ResNet-50 (mmdet, what seplugin extends)',
    COMPILED: 'ResNet-50 (mmdet, what seplugin extends)',  # with --compiled-tail
    LEAN: 'ResNet-50 (mmdet, what seplugin extends)',
    'mmpretrain SE-ResNet-50': 'mmpretrain ResNet-50',
    'timm seresnet50': 'timm resnet50',
    # with --compiled-models: both compiled
    'seplugin SE-ResNet-50, torch.compile': 'ResNet-50 (mmdet), torch.compile',
}
CONTROL = 'ResNet-50 (mmdet), an identical copy'  # A/A: timed like the others
PLAIN = SE_MODELS['seplugin SE-ResNet-50']
CONTROL_ROW = 'control: identical copy / ResNet-50 (resolution)'
PEER_ROW = 'seplugin / fastest peer SE-ResNet-50'
DETECTOR_ROW = 'Faster R-CNN SE-R50-FPN / R50-FPN'
DETECTORS = {'Faster R-CNN SE-R50-FPN': 'configs/faster_rcnn_se_r50_fpn_coco.py',
             'Faster R-CNN R50-FPN': 'configs/faster_rcnn_r50_fpn_coco.py'}


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of returning it to the OS.

    By default glibc unmaps freed large blocks and trims its heap, so the next allocation
    takes fresh pages that the kernel must fault in and zero. A model called again and
    again settles where it no longer does that; interleaved with other models it never
    settles, and which model pays for the page faults depends on which ran before it
    (measured here: no page faults per ResNet-50 inference alone, 40,000-55,000 and 20%
    more time interleaved). Kept memory, as jemalloc and tcmalloc do, times every model in
    its own steady state. Returns False where malloc is not glibc's.
    """
    try:
        mallopt = ctypes.CDLL('libc.so.6').mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    largest_heap_block = 32 * 2**20  # glibc's maximum on 64-bit; larger ones are mmapped
    return bool(mallopt(m_mmap_threshold, largest_heap_block)
                and mallopt(m_trim_threshold, 2**31 - 1))


def classifiers(peers: bool = True) -> dict[str, nn.Module]:
    """Each SE-ResNet-50 and its plain ResNet-50 as 1000-class ImageNet classifiers
    (only seplugin's and mmdet's without ``peers``)."""
    from mmdet.models.backbones import ResNet
    from mmpretrain.models import ResNet as PretrainResNet
    from mmpretrain.models import SEResNet as PretrainSEResNet
    lean = classifier(dict(type='SEResNet', depth=50))
    for module in lean.modules():
        if hasattr(module, 'fused_tail'):
            module.fused_tail = False
    models = {
        'seplugin SE-ResNet-50': classifier(dict(type='SEResNet', depth=50)),
        LEAN: lean,
        PLAIN: classifier(dict(type=ResNet, depth=50, norm_eval=False)),
    }
    if not peers:
        return models
    models.update({
        'mmpretrain SE-ResNet-50': classifier(dict(type=PretrainSEResNet, depth=50)),
        'mmpretrain ResNet-50': classifier(dict(type=PretrainResNet, depth=50)),
    })
    try:
        import timm
    except ImportError:
        print_log('timm is not installed: its models are left out', logger='current')
    else:
        models['timm seresnet50'] = timm.create_model('seresnet50')
        models['timm resnet50'] = timm.create_model('resnet50')
    return models


def training_step(model: nn.Module, images: torch.Tensor,
                  labels: torch.Tensor) -> Callable[[], None]:
    """A function running one SGD step (forward, cross-entropy, backward, update)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
    return step


def step_memory(step: Callable[[], None]) -> tuple[int, int]:
    """(peak bytes of the tensor storages one step creates, bytes saved for backward), after
    a warm-up step that creates the optimizer state. Parameters and optimizer state that
    the step updates in place are not new memory and are not counted."""
    step()
    with PeakTensorMemory() as memory:
        step()
    return memory.peak, saved_tensor_bytes(step)


def compiled_calls(models: dict[str, nn.Module], mode: str, images: torch.Tensor,
                   labels: torch.Tensor | None = None,
                   ) -> tuple[dict[str, Callable[[], object]], dict[str, float]]:
    """``torch.compile`` of a copy of each model of :data:`COMPILED_MODELS`, for ``mode``
    'inference' (``no_grad``, eval mode) or 'training' (:func:`training_step`): (the calls,
    the seconds of each one's first call).

    The first call compiles (tens of seconds on a CPU); it is made and timed here, so that
    the timed rounds see compiled code only and the compile time is reported apart.
    """
    if mode not in ('inference', 'training'):
        raise ValueError(f"mode {mode!r}: expected 'inference' or 'training'")
    if mode == 'training' and labels is None:
        raise ValueError("mode 'training' needs labels")
    calls, seconds = {}, {}
    for name, source in COMPILED_MODELS.items():
        model = copy.deepcopy(models[source])
        if mode == 'inference':
            compiled = torch.compile(model.eval())
            call = torch.no_grad()(lambda m=compiled: m(images))
        else:
            call = training_step(torch.compile(model.train()), images, labels)
        start = time.perf_counter()
        try:
            call()
        except Exception as e:
            raise RuntimeError(f'torch.compile of {name} ({mode}) failed: {type(e).__name__}: '
                               f'{str(e).strip().splitlines()[0][:300]}') from e
        seconds[name] = time.perf_counter() - start
        calls[name] = call
    return calls, seconds


def compiled_tail_label(state: str) -> str:
    """The name of the compiled-tail row given ``se_residual.compiled_tail_state()`` after
    the measured runs: only 'compiled' may be called compiled."""
    labels = {'compiled': COMPILED,
              'fallback': f'{COMPILED} requested, NOT compiled: eager fallback ran',
              'unused': f'{COMPILED} requested, NOT run: the compiled backward was never '
                        'called (eager)'}
    if state not in labels:
        raise ValueError(f'compiled tail state {state!r}: expected one of {tuple(labels)}')
    return labels[state]


def record_compiled_tail(results: dict) -> None:
    """Store in ``results`` what the compiled tail backward did in this process (read
    after the measured runs: a compile that failed mid-run shows as 'fallback')."""
    results['compiled_tail_state'] = se_residual.compiled_tail_state()


def detectors(device: str) -> dict[str, nn.Module]:
    """The SE and the plain Faster R-CNN, computing the same function.

    With random weights, each detector's proposals and detections (and so the cost of its
    RoI head and post-processing) would depend on its own draw. The SE detector therefore
    takes the plain one's weights and starts its SE layers neutral (constant gates divided
    out of the BN before them): same boxes, same downstream work, and the time difference
    is what SE itself costs.
    """
    models = {name: build_from_config(path)[0].to(device) for name, path in DETECTORS.items()}
    se, plain = models.values()
    # the plain weights have no SE keys: loading them starts the SE layers neutral
    keys = se.load_state_dict(plain.state_dict(), strict=False)
    assert not keys.unexpected_keys and all('se_layer' in k for k in keys.missing_keys)
    return models


def detector_calls(model: nn.Module, batch: int, size: int):
    """(training iteration, inference) of a detector on fixed random images and boxes."""
    from mmdet.testing import demo_mm_inputs
    torch.manual_seed(0)
    data = demo_mm_inputs(batch, [[3, size, size]] * batch, num_items=[5] * batch,
                          num_classes=80)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad],
                                lr=1e-3, momentum=0.9)

    def train_iter():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss, _ = model.parse_losses(model(**model.data_preprocessor(data, True),
                                           mode='loss'))
        loss.backward()
        optimizer.step()

    @torch.no_grad()
    def inference():
        model.eval()
        model.test_step(data)
    return train_iter, inference


def machine(device: str) -> str:
    cpu = platform.processor() or platform.machine()
    if os.path.exists('/proc/cpuinfo'):
        with open('/proc/cpuinfo') as f:
            names = [line.split(':', 1)[1].strip() for line in f if line.startswith('model name')]
        cpu = names[0] if names else cpu
    where = torch.cuda.get_device_name(device) if device.startswith('cuda') else \
        f'on the CPU, {torch.get_num_threads()} threads'
    return (f'{cpu}, {os.cpu_count()} cores ({where}); torch {torch.__version__}, '
            f'python {platform.python_version()}')


def timed(results: dict, mode: str, calls: dict, args, repeats: int) -> None:
    """Time ``calls`` (name: function) interleaved into ``results``: the median seconds
    under 'seconds' and every round's under 'samples'."""
    samples = time_interleaved(list(calls.values()), warmup=args.warmup, repeats=repeats,
                               shuffle=True)
    results['samples'][mode] = dict(zip(calls, samples))
    results['seconds'][mode] = {name: statistics.median(s) for name, s in zip(calls, samples)}


def run(args) -> dict:
    """Every measurement of ``args.measure``, as a JSON-able dict."""
    device = args.device
    torch.manual_seed(0)
    results = {'machine': machine(device), 'batch': args.batch, 'size': args.size,
               'repeats': args.repeats, 'seconds': {}, 'samples': {}, 'memory': {}}
    models = {name: model.to(device) for name, model in classifiers(args.peers).items()}
    models_timed = dict(models, **{CONTROL: copy.deepcopy(models[PLAIN])})
    images = torch.randn(args.batch, 3, args.size, args.size, device=device)
    labels = torch.randint(0, 1000, (args.batch,), device=device)
    compiled_models = getattr(args, 'compiled_models', False)
    start = time.perf_counter()  # the fused tail's kernels: built now, or loaded from cache
    se_fused_tail.kernels()
    results['fused_tail'] = dict(state=se_fused_tail.kernels_state(),
                                 seconds=time.perf_counter() - start)

    if 'memory' in args.measure:
        print_log('memory of one training step, model by model', logger='current')
    for name, model in models.items() if 'memory' in args.measure else ():
        peak, saved = step_memory(training_step(copy.deepcopy(model), images, labels))
        results['memory'][name] = dict(peak=peak, saved=saved)

    layouts = {'contiguous': torch.contiguous_format, 'channels_last': torch.channels_last}
    for layout, memory_format in layouts.items() if 'inference' in args.measure else ():
        copies = {name: copy.deepcopy(model).eval().to(memory_format=memory_format)
                  for name, model in models_timed.items()}
        x = images.contiguous(memory_format=memory_format)
        calls = {name: torch.no_grad()(lambda m=m, x=x: m(x)) for name, m in copies.items()}
        mode = f'inference ({layout})'
        if compiled_models and layout == 'contiguous':
            print_log('inference: compiling both models (first calls, not timed)',
                      logger='current')
            compiled, seconds = compiled_calls(models, 'inference', x)
            calls.update(compiled)
            results.setdefault('model_compile_seconds', {})[mode] = seconds
        print_log(f'{mode}: {len(calls)} models interleaved', logger='current')
        timed(results, mode, calls, args, args.repeats)

    if 'training' in args.measure:
        steps = {name: training_step(copy.deepcopy(m), images, labels)
                 for name, m in models_timed.items()}
        if args.compiled_tail:
            model = copy.deepcopy(models['seplugin SE-ResNet-50'])
            for module in model.modules():
                if hasattr(module, 'compiled_tail'):
                    module.compiled_tail = True
            steps[COMPILED] = training_step(model, images, labels)
            start = time.perf_counter()
            steps[COMPILED]()
            results['compile_seconds'] = time.perf_counter() - start
            print_log(f"compiled tail: first step {results['compile_seconds']:.1f} s "
                      '(compiling)', logger='current')
        if compiled_models:
            print_log('training: compiling both models (first steps, not timed)',
                      logger='current')
            compiled, seconds = compiled_calls(models, 'training', images, labels)
            steps.update(compiled)
            results.setdefault('model_compile_seconds', {})['training step'] = seconds
        print_log(f'training steps: {len(steps)} models interleaved', logger='current')
        timed(results, 'training step', steps, args, args.repeats)
        if args.compiled_tail:
            record_compiled_tail(results)
        del steps
    del models, models_timed

    if 'detection' in args.measure:
        calls = {name: detector_calls(model, args.det_batch, args.det_size)
                 for name, model in detectors(device).items()}
        for i, mode in enumerate(('detector training iteration', 'detector inference')):
            print_log(f'{mode}: 2 detectors interleaved', logger='current')
            timed(results, mode, {name: c[i] for name, c in calls.items()}, args,
                  args.det_repeats)
        results['det_batch'], results['det_size'] = args.det_batch, args.det_size
    return results


def median_ranks(n: int, confidence: float = CONFIDENCE) -> tuple[int, int, float]:
    """1-based ranks ``(j, k)`` of the order statistics whose span ``[x_(j), x_(k)]`` is a
    confidence interval of the median of ``n`` values, and its actual coverage.

    The number of values below the true median is binomial(n, 1/2) whatever their
    distribution, so ``[x_(j), x_(n+1-j)]`` covers it with probability
    ``1 - 2 P(B <= j - 1)`` (exactly, for continuous values; ties only add). The
    narrowest such interval with coverage >= ``confidence`` is taken; with too few values
    for that (n <= 5 at 95%) it is the whole range, whose coverage is then below.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f'n={n!r}: expected a positive number of values')
    from scipy.stats import binom
    j = 1
    while j + 1 <= (n + 1) // 2 and 1 - 2 * binom.cdf(j, n, 0.5) >= confidence:
        j += 1
    return j, n + 1 - j, float(1 - 2 * binom.cdf(j - 1, n, 0.5))


def median_interval(values: Sequence[float],
                    confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(low, high, actual coverage) of the order-statistic confidence interval of the
    median of ``values`` (:func:`median_ranks`)."""
    ordered = sorted(values)
    j, k, coverage = median_ranks(len(ordered), confidence)
    return float(ordered[j - 1]), float(ordered[k - 1]), coverage


def round_ratios(se: list[float], plain: list[float],
                 ) -> tuple[float, tuple[float, float] | None, float | None]:
    """(median over the rounds of ``se / plain`` in each round, its confidence interval,
    the interval's actual coverage).

    Both models of a round ran next to each other, so a slow round (the machine busy)
    slows both and cancels in the round's ratio. The interval is :func:`median_interval`
    of the rounds' ratios, which holds its coverage at any number of rounds (a percentile
    bootstrap of a median under-covers at 12-15); None from a single round.
    """
    if len(se) != len(plain) or not se:
        raise ValueError(f'rounds: {len(se)} SE and {len(plain)} plain samples; expected '
                         'the same number, at least one')
    per_round = [s / p for s, p in zip(se, plain)]
    ratio = statistics.median(per_round)
    if len(per_round) < 2:
        return ratio, None, None
    low, high, coverage = median_interval(per_round)
    return ratio, (low, high), coverage


def ratios(results: dict) -> list[dict]:
    """Every comparison with its target: SE / plain (``TARGETS``, else ``TARGET``) and
    seplugin / fastest peer SE implementation (<= 1, 'at least as fast'). Time ratios
    carry a confidence ``interval`` and its ``coverage`` when the rounds' samples are in
    ``results``."""
    rows = []
    memory = results['memory']
    for kind in ('peak', 'saved'):
        what = 'peak training-step tensor memory' if kind == 'peak' else \
            'tensors saved for backward'
        for se, plain in SE_MODELS.items():
            if se in memory:
                rows.append(dict(measure=what, model=se, ratio=memory[se][kind]
                                 / memory[plain][kind], interval=None, coverage=None,
                                 target=MEMORY_TARGET if kind == 'peak'
                                 and se == 'seplugin SE-ResNet-50'
                                 else None))

    for mode, seconds in results['seconds'].items():
        target = TARGETS.get(mode, TARGET)
        pairs = []  # (row name, numerator, denominator, target)
        if mode.startswith('detector'):
            pairs.append((DETECTOR_ROW, *DETECTORS, target))
        else:
            pairs += [(model_label(results, se), se, plain,
                       target if se.startswith('seplugin') else None)
                      for se, plain in SE_MODELS.items() if se in seconds and plain in seconds]
            peers = [se for se in SE_MODELS if se in seconds and not se.startswith('seplugin')]
            if peers:
                pairs.append((PEER_ROW, 'seplugin SE-ResNet-50',
                              min(peers, key=seconds.get), 1.0))
            if CONTROL in seconds:
                pairs.append((CONTROL_ROW, CONTROL, PLAIN, None))
        samples = results.get('samples', {}).get(mode)
        for model, se, plain, row_target in pairs:
            ratio, interval, coverage = round_ratios(samples[se], samples[plain]) \
                if samples else (seconds[se] / seconds[plain], None, None)
            rows.append(dict(measure=mode, model=model, ratio=ratio, interval=interval,
                             coverage=coverage, target=row_target))
    return rows


def model_label(results: dict, name: str) -> str:
    """How a model is named in the report: the compiled tail by what actually ran."""
    if name == COMPILED and 'compiled_tail_state' in results:
        return compiled_tail_label(results['compiled_tail_state'])
    return name


def met(row: dict) -> bool | None:
    """Whether a row meets its target: the interval's upper end (else the ratio) within it;
    None without a target."""
    if row['target'] is None:
        return None
    return (row['interval'][1] if row.get('interval') else row['ratio']) <= row['target']


def interval_note(results: dict, rows: list[dict]) -> str:
    """One line naming the interval method and, per number of rounds, the ranks used and
    their actual coverage."""
    counts = sorted({len(next(iter(s.values()))) for s in results.get('samples', {}).values()
                     if s})
    parts = []
    for n in counts:
        j, k, coverage = median_ranks(n)
        parts.append(f'{n} rounds: ranks {j}..{k}, coverage {coverage:.1%}'
                     + (f' (below {CONFIDENCE:.0%}: too few rounds)'
                        if coverage < CONFIDENCE else ''))
    return f'intervals: {INTERVAL_METHOD}' + (f"; {'; '.join(parts)}" if parts else '')


def report(results: dict, rows: list[dict]) -> str:
    lines = [f"machine: {results['machine']}",
             f"classifiers: batch {results['batch']}, {results['size']}x{results['size']}, "
             f"medians of {results['repeats']} interleaved runs; malloc: "
             f"{results.get('malloc', 'system default')}"]
    if 'det_batch' in results:
        lines.append(f"detectors: batch {results['det_batch']}, "
                     f"{results['det_size']}x{results['det_size']}")
    if 'fused_tail' in results:
        fused = results['fused_tail']
        lines.append(f"fused SE tail kernels: {fused['state']} in {fused['seconds']:.1f} s "
                     '(compiled at the first use, then loaded from the extension cache)')
    if 'compile_seconds' in results:
        state = results.get('compiled_tail_state', 'not read')
        lines.append(f"compiled tail: first training step {results['compile_seconds']:.1f} s "
                     f'(compiling, not timed); after the timed steps its state is {state!r}')
    for mode, seconds in results.get('model_compile_seconds', {}).items():
        lines.append(f'torch.compile, {mode}: first call (compiling, not timed) '
                     + ', '.join(f'{name} {s:.1f} s' for name, s in seconds.items()))
    lines += ['', '| measurement | model | value |', '|---|---|---:|']
    for name, m in results['memory'].items():
        lines.append(f"| peak training-step tensor memory | {name} | "
                     f"{m['peak'] / 2**20:.0f} MiB |")
    for name, m in results['memory'].items():
        lines.append(f"| tensors saved for backward | {name} | {m['saved'] / 2**20:.0f} MiB |")
    for mode, seconds in results['seconds'].items():
        for name, s in seconds.items():
            lines.append(f'| {mode} | {model_label(results, name)} | {s * 1e3:.0f} ms |')
    lines += ['', interval_note(results, rows), '',
              f'| measurement | ratio | value | {CONFIDENCE:.0%} interval | target | met |',
              '|---|---|---:|---:|---:|---|']
    for r in rows:
        target = f"<= {r['target']:.2f}" if r['target'] else ''
        interval = '{:.3f}-{:.3f}'.format(*r['interval']) if r.get('interval') else \
            'exact' if 'memory' in r['measure'] or 'saved' in r['measure'] else ''
        if r.get('coverage') is not None and r['coverage'] < CONFIDENCE:
            interval += f" (covers {r['coverage']:.0%} only)"
        verdict = {None: '', True: 'yes', False: 'NO'}[met(r)]
        lines.append(f"| {r['measure']} | {r['model']} | {r['ratio']:.3f} | {interval} | "
                     f'{target} | {verdict} |')
    return '\n'.join(lines)


def plot(rows: list[dict], path: str) -> None:
    """SE / plain ratio of each implementation per measurement, target line at 1.03."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    measures = list(dict.fromkeys(r['measure'] for r in rows if r['model'] != PEER_ROW))
    series = list(dict.fromkeys(r['model'] for r in rows
                                if r['model'] not in (PEER_ROW, DETECTOR_ROW)))
    names = [*series, DETECTOR_ROW]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(series)
    for i, name in enumerate(names):
        xs, ys, errors = [], [], [[], []]
        for j, measure in enumerate(measures):
            for r in rows:
                if r['measure'] == measure and r['model'] == name:
                    offset = i - (len(series) - 1) / 2 if name in series else 0
                    xs.append(j + offset * width)
                    ys.append(r['ratio'])
                    low, high = r.get('interval') or (r['ratio'], r['ratio'])
                    errors[0].append(r['ratio'] - low)
                    errors[1].append(high - r['ratio'])
        if xs:
            style = dict(color='lightgrey', hatch='//') if name == CONTROL_ROW else {}
            ax.bar(xs, ys, width, yerr=errors, capsize=2, label=name.replace(' / R50-FPN', ''),
                   **style)
    ax.axhline(TARGET, color='k', linestyle='--', linewidth=1, label=f'target {TARGET}')
    for j, measure in enumerate(measures):
        if measure in TARGETS:
            ax.hlines(TARGETS[measure], j - 0.45, j + 0.45, color='k', linestyle=':',
                      linewidth=1)
    ax.axhline(1.0, color='grey', linewidth=0.5)
    labels = [m.replace(' (', '\n(').replace('training-step ', '').replace(' for ', '\nfor ')
              .replace('detector ', 'detector\n') for m in measures]
    ax.set_xticks(range(len(measures)), labels, fontsize=8)
    ax.set_xlim(-0.6, len(measures) - 0.4)
    ax.set_ylim(0.9, max(1.3, max((r.get('interval') or (0, r['ratio']))[1] for r in rows)
                         + 0.02))
    ax.set_ylabel(f'SE / plain (bars: {CONFIDENCE:.0%} interval; dotted: own target)')
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(args) -> None:
    """Run the benchmark for parsed ``args`` (see ``tools/benchmark.py``): measure, print the
    report, write ``args.json`` and ``args.plot`` when given."""
    unknown = [m for m in args.measure if m not in MEASUREMENTS]
    if unknown:
        raise ValueError(f'--measure {" ".join(unknown)}: expected some of {MEASUREMENTS}')
    if args.device is None:
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        print(f'--device {args.device}: no CUDA GPU here (torch {torch.__version__}, '
              f'CUDA build: {torch.version.cuda or "none"}); the GPU benchmark is skipped. '
              'Run it where there is a GPU, or leave --device out for the CPU.')
        return
    if args.device.startswith('cuda'):
        torch.cuda.set_device(args.device)  # what time_interleaved synchronises
    kept = not args.system_malloc and keep_freed_memory()
    results = run(args)
    results['malloc'] = 'freed memory kept for reuse' if kept else 'system default'
    rows = ratios(results)
    print(report(results, rows))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(results, ratios=rows), f, indent=2)
    if args.plot:
        plot(rows, args.plot)
    missed = [r for r in rows if met(r) is False]
    if missed:
        print(f'{len(missed)} target(s) missed')
