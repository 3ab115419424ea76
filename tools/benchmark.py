"""What SE costs in time and memory: seplugin's SE-ResNet-50 against plain ResNet-50 and
against MMPretrain's and timm's SE-ResNet-50, and SE-R50-FPN against R50-FPN Faster R-CNN.

    python tools/benchmark.py              # everything (about 17 min on 2 CPU cores)
    python tools/benchmark.py --measure memory training --repeats 5 --plot ratios.png

All models of a measurement run interleaved in one process, each round in a new random
order (A B C, C A B, ...), so machine noise falls on all of them alike. A time ratio is
the median over the rounds of each round's ratio (a busy round slows both models and
cancels), with a 95% interval from scipy's bootstrap over the rounds; a target is met when
the interval's upper end is within it. An identical copy of ResNet-50 runs as one more
model: its ratio to ResNet-50 should be 1, and how far it is from 1 is the resolution of
that measurement. ``--compiled-tail`` times one more SE-ResNet-50 in training, with the
compiled SE tail backward (README, "Speed and memory"). Freed memory is kept by malloc
(see ``keep_freed_memory``; ``--system-malloc`` to not). Memory is exact: the peak of live
tensor storages during one training step (forward, backward, optimizer step), and the
storages autograd keeps for backward; it does not depend on timing. ``--device cuda``
measures the same on a GPU (the default when there is one).
"""
from __future__ import annotations

import argparse
import copy
import ctypes
import json
import os
import platform
import statistics
import sys
import time

MEASUREMENTS = ['memory', 'inference', 'training', 'detection']
TARGET = 1.03  # SE / plain, for memory and for the times without a target of their own
TARGETS = {'inference (channels_last)': 1.02, 'detector training iteration': 1.02}
CONFIDENCE = 0.95
COMPILED = 'seplugin SE-ResNet-50, compiled tail'
SE_MODELS = {  # SE model: its plain counterpart
    'seplugin SE-ResNet-50': 'ResNet-50 (mmdet, what seplugin extends)',
    COMPILED: 'ResNet-50 (mmdet, what seplugin extends)',  # with --compiled-tail
    'mmpretrain SE-ResNet-50': 'mmpretrain ResNet-50',
    'timm seresnet50': 'timm resnet50',
}
CONTROL = 'ResNet-50 (mmdet), an identical copy'  # A/A: timed like the others
PLAIN = SE_MODELS['seplugin SE-ResNet-50']
CONTROL_ROW = 'control: identical copy / ResNet-50 (resolution)'
DETECTORS = {'Faster R-CNN SE-R50-FPN': 'configs/faster_rcnn_se_r50_fpn_coco.py',
             'Faster R-CNN R50-FPN': 'configs/faster_rcnn_r50_fpn_coco.py'}


def import_libraries() -> None:
    """torch, mmengine and seplugin, imported after the arguments are parsed so that
    ``--help`` and argument errors answer at once."""
    global torch, F, nn, print_log, build_from_config, classifier, time_interleaved, \
        PeakTensorMemory, saved_tensor_bytes
    import torch
    import torch.nn.functional as F
    from mmengine.logging import print_log
    from torch import nn

    from seplugin.analysis.complexity import build_from_config, classifier, time_interleaved
    from seplugin.analysis.memory import PeakTensorMemory, saved_tensor_bytes


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
    models = {
        'seplugin SE-ResNet-50': classifier(dict(type='SEResNet', depth=50)),
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


def training_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor):
    """A function running one SGD step (forward, cross-entropy, backward, update)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
    return step


def step_memory(step) -> tuple[int, int]:
    """(peak live tensor bytes, bytes saved for backward) of one step, after a warm-up step
    that creates the optimizer state."""
    step()
    with PeakTensorMemory() as memory:
        step()
    return memory.peak, saved_tensor_bytes(step)


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
    device = args.device
    torch.manual_seed(0)
    results = {'machine': machine(device), 'batch': args.batch, 'size': args.size,
               'repeats': args.repeats, 'seconds': {}, 'samples': {}, 'memory': {}}
    models = {name: model.to(device) for name, model in classifiers(args.peers).items()}
    models_timed = dict(models, **{CONTROL: copy.deepcopy(models[PLAIN])})
    images = torch.randn(args.batch, 3, args.size, args.size, device=device)
    labels = torch.randint(0, 1000, (args.batch,), device=device)

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
        print_log(f'inference, {layout}: {len(calls)} models interleaved', logger='current')
        timed(results, f'inference ({layout})', calls, args, args.repeats)

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
        print_log(f'training steps: {len(steps)} models interleaved', logger='current')
        timed(results, 'training step', steps, args, args.repeats)
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


def round_ratios(se: list[float], plain: list[float]) -> tuple[float, tuple | None]:
    """(median over the rounds of ``se / plain`` in each round, its 95% interval).

    Both models of a round ran next to each other, so a slow round (the machine busy)
    slows both and cancels in the round's ratio. The interval is scipy's percentile
    bootstrap of that median over the rounds; None from a single round.
    """
    import numpy as np
    from scipy import stats
    per_round = np.asarray(se) / np.asarray(plain)
    if len(per_round) < 2:
        return float(per_round[0]), None
    interval = stats.bootstrap((per_round,), np.median, confidence_level=CONFIDENCE,
                               method='percentile',
                               random_state=np.random.default_rng(0)).confidence_interval
    return float(np.median(per_round)), (float(interval.low), float(interval.high))


def ratios(results: dict) -> list[dict]:
    """Every comparison with its target: SE / plain (``TARGETS``, else ``TARGET``) and
    seplugin / fastest peer SE implementation (<= 1, 'at least as fast'). Time ratios
    carry a 95% ``interval`` when the rounds' samples are in ``results``."""
    rows = []
    memory = results['memory']
    for kind in ('peak', 'saved'):
        what = 'peak training-step tensor memory' if kind == 'peak' else \
            'tensors saved for backward'
        for se, plain in SE_MODELS.items():
            if se in memory:
                rows.append(dict(measure=what, model=se, ratio=memory[se][kind]
                                 / memory[plain][kind], interval=None, target=TARGET
                                 if kind == 'peak' and se.startswith('seplugin') else None))

    for mode, seconds in results['seconds'].items():
        target = TARGETS.get(mode, TARGET)
        pairs = []  # (row name, numerator, denominator, target)
        if mode.startswith('detector'):
            pairs.append(('Faster R-CNN SE-R50-FPN / R50-FPN', *DETECTORS, target))
        else:
            pairs += [(se, se, plain, target if se.startswith('seplugin') else None)
                      for se, plain in SE_MODELS.items() if se in seconds]
            peers = [se for se in SE_MODELS if se in seconds and not se.startswith('seplugin')]
            if peers:
                pairs.append(('seplugin / fastest peer SE-ResNet-50', 'seplugin SE-ResNet-50',
                              min(peers, key=seconds.get), 1.0))
            if CONTROL in seconds:
                pairs.append((CONTROL_ROW, CONTROL, PLAIN, None))
        samples = results.get('samples', {}).get(mode)
        for model, se, plain, row_target in pairs:
            ratio, interval = round_ratios(samples[se], samples[plain]) if samples else \
                (seconds[se] / seconds[plain], None)
            rows.append(dict(measure=mode, model=model, ratio=ratio, interval=interval,
                             target=row_target))
    return rows


def met(row: dict) -> bool | None:
    """Whether a row meets its target: the interval's upper end (else the ratio) within it;
    None without a target."""
    if row['target'] is None:
        return None
    return (row['interval'][1] if row.get('interval') else row['ratio']) <= row['target']


def report(results: dict, rows: list[dict]) -> str:
    lines = [f"machine: {results['machine']}",
             f"classifiers: batch {results['batch']}, {results['size']}x{results['size']}, "
             f"medians of {results['repeats']} interleaved runs; malloc: "
             f"{results.get('malloc', 'system default')}"]
    if 'det_batch' in results:
        lines.append(f"detectors: batch {results['det_batch']}, "
                     f"{results['det_size']}x{results['det_size']}")
    lines += ['', '| measurement | model | value |', '|---|---|---:|']
    for name, m in results['memory'].items():
        lines.append(f"| peak training-step tensor memory | {name} | "
                     f"{m['peak'] / 2**20:.0f} MiB |")
    for name, m in results['memory'].items():
        lines.append(f"| tensors saved for backward | {name} | {m['saved'] / 2**20:.0f} MiB |")
    for mode, seconds in results['seconds'].items():
        for name, s in seconds.items():
            lines.append(f'| {mode} | {name} | {s * 1e3:.0f} ms |')
    lines += ['', f'| measurement | ratio | value | {CONFIDENCE:.0%} interval | target | met |',
              '|---|---|---:|---:|---:|---|']
    for r in rows:
        target = f"<= {r['target']:.2f}" if r['target'] else ''
        interval = '{:.3f}-{:.3f}'.format(*r['interval']) if r.get('interval') else \
            'exact' if 'memory' in r['measure'] or 'saved' in r['measure'] else ''
        verdict = {None: '', True: 'yes', False: 'NO'}[met(r)]
        lines.append(f"| {r['measure']} | {r['model']} | {r['ratio']:.3f} | {interval} | "
                     f'{target} | {verdict} |')
    return '\n'.join(lines)


def plot(rows: list[dict], path: str) -> None:
    """SE / plain ratio of each implementation per measurement, target line at 1.03."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    measures = list(dict.fromkeys(r['measure'] for r in rows
                                  if r['model'] in SE_MODELS or r['measure'].startswith('det')))
    series = [*SE_MODELS, CONTROL_ROW]
    names = [*series, 'Faster R-CNN SE-R50-FPN / R50-FPN']
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch', type=int, default=8, help='classifier batch size')
    parser.add_argument('--size', type=int, default=224, help='classifier input size')
    parser.add_argument('--repeats', type=int, default=15, help='timed runs per model')
    parser.add_argument('--warmup', type=int, default=2, help='untimed runs per model')
    parser.add_argument('--measure', nargs='+', choices=MEASUREMENTS, default=MEASUREMENTS,
                        help='what to measure (default: all)')
    parser.add_argument('--det-batch', type=int, default=2)
    parser.add_argument('--det-size', type=int, default=320)
    parser.add_argument('--det-repeats', type=int, default=15)
    parser.add_argument('--json', help='write the measurements and ratios here')
    parser.add_argument('--plot', help='write a bar chart of the ratios here (PNG)')
    parser.add_argument('--no-peers', dest='peers', action='store_false',
                        help="leave out MMPretrain's and timm's models (a shorter run)")
    parser.add_argument('--system-malloc', action='store_true',
                        help="leave malloc's defaults (see keep_freed_memory)")
    parser.add_argument('--compiled-tail', action='store_true',
                        help='time one more SE-ResNet-50 training step, with the compiled '
                        'SE tail backward')
    parser.add_argument('--device', help="'cpu', 'cuda' or 'cuda:N' (default: cuda when "
                        'there is a GPU, else cpu)')
    parser.add_argument('--verbose', action='store_true',
                        help='on an error, print its traceback')
    args = parser.parse_args()
    from seplugin.cli.console import hide_setuptools_notice
    hide_setuptools_notice()

    import_libraries()
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


if __name__ == '__main__':
    try:
        main()
    except Exception as error:
        from seplugin.cli.console import exit_on_error
        exit_on_error(error, verbose='--verbose' in sys.argv)
