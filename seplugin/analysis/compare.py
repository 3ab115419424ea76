"""Read mmengine work dirs of SE and baseline runs and compare them fairly (several seeds)."""
import csv
import glob
import json
import math
import os.path as osp
import statistics
from dataclasses import dataclass, field

METRICS = {
    'detection': ['coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75', 'coco/bbox_mAP_s',
                  'coco/bbox_mAP_m', 'coco/bbox_mAP_l'],
    'classification': ['accuracy/top1', 'accuracy/top5'],
}
# mmdet reports AP in [0, 1], mmpretrain accuracy in percent: tables use percent for both
SCALE = {'detection': 100.0, 'classification': 1.0}

# The paper's results for the same settings (Hu et al., TPAMI), in percent.
PAPER = {
    'coco-r50': ('Faster R-CNN, COCO minival', {
        'baseline': {'coco/bbox_mAP': 38.0, 'coco/bbox_mAP_50': 57.9},
        'se': {'coco/bbox_mAP': 40.4, 'coco/bbox_mAP_50': 61.0}}),
    'coco-r101': ('Faster R-CNN, COCO minival', {
        'baseline': {'coco/bbox_mAP': 39.9, 'coco/bbox_mAP_50': 60.1},
        'se': {'coco/bbox_mAP': 41.9, 'coco/bbox_mAP_50': 62.7}}),
    'imagenet-r50': ('ImageNet val, 224 single crop (100 - error)', {
        'baseline': {'accuracy/top1': 100 - 24.80, 'accuracy/top5': 100 - 7.48},
        'se': {'accuracy/top1': 100 - 23.29, 'accuracy/top5': 100 - 6.62}}),
    'places365-r152': ('Places365 val, single crop (100 - error)', {
        'baseline': {'accuracy/top1': 100 - 41.15, 'accuracy/top5': 100 - 11.61},
        'se': {'accuracy/top1': 100 - 40.37, 'accuracy/top5': 100 - 11.01}}),
}


@dataclass
class Run:
    """What one work dir holds: final metrics and training curves."""
    work_dir: str
    metrics: dict[str, float] = field(default_factory=dict)
    source: str = ''  # 'test' (tools/test.py results) or 'val' (last validation)
    train: list[dict] = field(default_factory=list)  # scalars.json lines with a loss
    val: list[dict] = field(default_factory=list)    # scalars.json lines with metrics
    problem: str = ''


def _json_lines(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_run(work_dir: str, task: str) -> Run:
    """Metrics of a work dir: the newest test results, else the last validation."""
    run = Run(work_dir)
    if not osp.isdir(work_dir):
        run.problem = 'work dir does not exist'
        return run
    names = METRICS[task]
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        lines = _json_lines(path)
        if any('loss' in line for line in lines):
            run.train = [line for line in lines if 'loss' in line]
            run.val = [line for line in lines if any(n in line for n in names)]
    for path in sorted(glob.glob(osp.join(work_dir, '*', '*.json'))):
        lines = _json_lines(path)
        if lines and any(n in lines[-1] for n in names):
            run.metrics, run.source = lines[-1], 'test'
    if not run.metrics and run.val:
        run.metrics, run.source = run.val[-1], 'val'
    if not run.metrics:
        run.problem = (f'no {task} metrics ({", ".join(names[:2])}...) in test results or '
                       'validation logs: unfinished or failed run?')
    # COCO reports -1 for a size range with no objects in the evaluated set: undefined
    run.metrics = {n: run.metrics[n] * SCALE[task] for n in names
                   if n in run.metrics and run.metrics[n] != -1}
    return run


def detect_task(work_dirs: list[str]) -> str:
    """'detection' or 'classification', from the metric names the runs logged."""
    for work_dir in work_dirs:
        for path in glob.glob(osp.join(work_dir, '*', '*.json')) + glob.glob(
                osp.join(work_dir, '*', 'vis_data', 'scalars.json')):
            text = open(path).read()
            for task, names in METRICS.items():
                if names[0] in text:
                    return task
    raise ValueError(f'none of {work_dirs} holds COCO bbox or accuracy metrics')


def summary(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single seed)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def compare(se: list[Run], baseline: list[Run], task: str) -> list[dict]:
    """One row per metric: mean +- std of each model, SE - baseline, and whether the
    difference exceeds seed noise (|delta| > 2 standard errors of the difference)."""
    rows = []
    for name in METRICS[task]:
        se_values = [r.metrics[name] for r in se if name in r.metrics]
        base_values = [r.metrics[name] for r in baseline if name in r.metrics]
        if not se_values or not base_values:
            continue
        (se_mean, se_std), (base_mean, base_std) = summary(se_values), summary(base_values)
        delta = se_mean - base_mean
        if se_std is None or base_std is None:
            verdict = 'unknown (needs >= 2 seeds each)'
        else:
            noise = math.sqrt(se_std ** 2 / len(se_values) + base_std ** 2 / len(base_values))
            verdict = 'yes' if abs(delta) > 2 * noise else 'no'
            verdict += f' (2 s.e. = {2 * noise:.2f})'
        rows.append(dict(metric=name, baseline_mean=base_mean, baseline_std=base_std,
                         baseline_n=len(base_values), se_mean=se_mean, se_std=se_std,
                         se_n=len(se_values), delta=delta, exceeds_noise=verdict))
    return rows


def _pm(mean: float, std: float | None) -> str:
    return f'{mean:.2f}' + (f' ± {std:.2f}' if std is not None else '')


def markdown(rows: list[dict], paper: str | None, problems: list[str]) -> str:
    lines = ['| metric | baseline | SE | SE - baseline | exceeds seed noise |',
             '|---|---:|---:|---:|---|']
    for r in rows:
        lines.append(f"| {r['metric']} | {_pm(r['baseline_mean'], r['baseline_std'])} "
                     f"(n={r['baseline_n']}) | {_pm(r['se_mean'], r['se_std'])} "
                     f"(n={r['se_n']}) | {r['delta']:+.2f} | {r['exceeds_noise']} |")
    if paper:
        setting, ref = PAPER[paper]
        lines += ['', f'Paper ({setting}):', '',
                  '| metric | baseline | SE | SE - baseline |', '|---|---:|---:|---:|']
        for name, base in ref['baseline'].items():
            se = ref['se'][name]
            lines.append(f'| {name} | {base:.2f} | {se:.2f} | {se - base:+.2f} |')
    if problems:
        lines += ['', 'Missing or partial runs (not in the table):', '']
        lines += [f'- {p}' for p in problems]
    return '\n'.join(lines)


def write_csv(rows: list[dict], path: str) -> None:
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ['metric'])
        writer.writeheader()
        writer.writerows(rows)


def plot(rows: list[dict], se: list[Run], baseline: list[Run], task: str,
         out_dir: str) -> list[str]:
    """metrics.png (bars with std error bars) and curves.png (loss and metric per run)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    paths = []
    if rows:
        fig, ax = plt.subplots(figsize=(1.6 * len(rows) + 2, 3.5))
        x = range(len(rows))
        for offset, key, label in ((-0.2, 'baseline', 'baseline'), (0.2, 'se', 'SE')):
            ax.bar([i + offset for i in x], [r[f'{key}_mean'] for r in rows], width=0.4,
                   yerr=[r[f'{key}_std'] or 0 for r in rows], capsize=3, label=label)
        ax.set_xticks(list(x), [r['metric'].split('/')[-1] for r in rows])
        ax.set_ylabel('%')
        ax.legend()
        ax.set_title('SE vs baseline (mean ± std over seeds)')
        fig.tight_layout()
        paths.append(osp.join(out_dir, 'metrics.png'))
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(10, 3.5))
    metric = METRICS[task][0]
    for runs, color, label in ((baseline, 'tab:blue', 'baseline'), (se, 'tab:orange', 'SE')):
        for i, run in enumerate(runs):
            kwargs = dict(color=color, alpha=0.8, label=label if i == 0 else None)
            if run.train:
                loss_ax.plot([r['step'] for r in run.train], [r['loss'] for r in run.train],
                             **kwargs)
            if run.val:
                metric_ax.plot([r['step'] for r in run.val if metric in r],
                               [r[metric] * SCALE[task] for r in run.val if metric in r],
                               marker='o', **kwargs)
    loss_ax.set(title='training loss', xlabel='iteration')
    metric_ax.set(title=f'validation {metric}', xlabel='validation step', ylabel='%')
    loss_ax.legend()
    fig.tight_layout()
    paths.append(osp.join(out_dir, 'curves.png'))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths
