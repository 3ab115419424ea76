"""Read mmengine work dirs of SE and baseline runs and compare them fairly (several seeds).

A difference is called significant only by Welch's t-test (unequal variances) at the 5%
level, with at least ``MIN_SEEDS`` runs per model: with 2 seeds the standard deviation is
too unreliable to test anything. Confidence intervals come from the t distribution (of the
mean for each model; Welch-Satterthwaite degrees of freedom for the difference). Only runs
with test results (``tools/test.py``) enter the table; others are listed.
"""
import csv
import glob
import json
import math
import os.path as osp
import statistics
from dataclasses import dataclass, field

from scipy import stats

# Fewer runs per model than this: no verdict.
MIN_SEEDS = 3
LEVEL = 0.95

METRICS = {
    'detection': ['coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75', 'coco/bbox_mAP_s',
                  'coco/bbox_mAP_m', 'coco/bbox_mAP_l'],
    'classification': ['accuracy/top1', 'accuracy/top5'],
}
# mmdet reports AP in [0, 1], mmpretrain accuracy in percent: tables use percent for both
SCALE = {'detection': 100.0, 'classification': 1.0}

# The paper's results for the same settings (Hu et al., "Squeeze-and-Excitation Networks",
# TPAMI 2019), in percent: Table 2 (ImageNet, the authors' re-implementation of the
# baselines), Table 7 (COCO), the Places365 table.
PAPER = {
    'coco-r50': ('Faster R-CNN, COCO minival, Table 7', {
        'baseline': {'coco/bbox_mAP': 38.0, 'coco/bbox_mAP_50': 57.9},
        'se': {'coco/bbox_mAP': 40.4, 'coco/bbox_mAP_50': 61.0}}),
    'coco-r101': ('Faster R-CNN, COCO minival, Table 7', {
        'baseline': {'coco/bbox_mAP': 39.9, 'coco/bbox_mAP_50': 60.1},
        'se': {'coco/bbox_mAP': 41.9, 'coco/bbox_mAP_50': 62.7}}),
    'imagenet-r50': ('ImageNet val, 224 single crop (100 - error), Table 2', {
        'baseline': {'accuracy/top1': 100 - 24.80, 'accuracy/top5': 100 - 7.48},
        'se': {'accuracy/top1': 100 - 23.29, 'accuracy/top5': 100 - 6.62}}),
    'imagenet-r101': ('ImageNet val, 224 single crop (100 - error), Table 2', {
        'baseline': {'accuracy/top1': 100 - 23.17, 'accuracy/top5': 100 - 6.52},
        'se': {'accuracy/top1': 100 - 22.38, 'accuracy/top5': 100 - 6.07}}),
    'places365-r152': ('Places365 val, single crop (100 - error)', {
        'baseline': {'accuracy/top1': 100 - 41.15, 'accuracy/top5': 100 - 11.61},
        'se': {'accuracy/top1': 100 - 40.37, 'accuracy/top5': 100 - 11.01}}),
}
# The paper's detectors started from its own ImageNet models: their pair's top-1.
PAPER_PRETRAINING = {'coco-r50': 'imagenet-r50', 'coco-r101': 'imagenet-r101'}


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


def mean_interval(values: list[float]) -> tuple[float, float] | None:
    """The ``LEVEL`` confidence interval of the mean (t distribution, n - 1 d.o.f.)."""
    if len(values) < 2:
        return None
    mean, std = summary(values)
    half = stats.t.ppf((1 + LEVEL) / 2, len(values) - 1) * std / math.sqrt(len(values))
    return mean - half, mean + half


def welch(se: list[float], baseline: list[float]) -> dict:
    """Welch's t-test of SE - baseline: t, Welch-Satterthwaite d.o.f., two-sided p and the
    ``LEVEL`` interval of the difference (NaN where undefined: fewer than 2 runs, or no
    seed-to-seed variation at all)."""
    nan = dict(t=math.nan, df=math.nan, p=math.nan, low=math.nan, high=math.nan)
    if len(se) < 2 or len(baseline) < 2:
        return nan
    v1, v2 = statistics.variance(se) / len(se), statistics.variance(baseline) / len(baseline)
    if v1 + v2 == 0:
        return nan
    delta = statistics.fmean(se) - statistics.fmean(baseline)
    error = math.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / (v1 ** 2 / (len(se) - 1) + v2 ** 2 / (len(baseline) - 1))
    t = delta / error
    half = stats.t.ppf((1 + LEVEL) / 2, df) * error
    return dict(t=t, df=df, p=2 * stats.t.sf(abs(t), df), low=delta - half, high=delta + half)


def verdict(n_se: int, n_baseline: int, test: dict) -> str:
    """'yes'/'no' (Welch's t at 5%) only with ``MIN_SEEDS`` runs per model."""
    if min(n_se, n_baseline) < MIN_SEEDS:
        return f'not tested (needs >= {MIN_SEEDS} seeds each)'
    if math.isnan(test['p']):
        return 'not tested (no seed-to-seed variation)'
    answer = 'yes' if test['p'] < 1 - LEVEL else 'no'
    return f"{answer} (p = {test['p']:.3f}, Welch t = {test['t']:.2f}, df = {test['df']:.1f})"


def compare(se: list[Run], baseline: list[Run], task: str) -> list[dict]:
    """One row per metric: mean +- std and the t interval of each model's mean, SE -
    baseline with its Welch interval, and whether the difference is significant."""
    rows = []
    for name in METRICS[task]:
        se_values = [r.metrics[name] for r in se if name in r.metrics]
        base_values = [r.metrics[name] for r in baseline if name in r.metrics]
        if not se_values or not base_values:
            continue
        (se_mean, se_std), (base_mean, base_std) = summary(se_values), summary(base_values)
        test = welch(se_values, base_values)
        base_ci, se_ci = mean_interval(base_values), mean_interval(se_values)
        rows.append(dict(
            metric=name, baseline_mean=base_mean, baseline_std=base_std,
            baseline_n=len(base_values), baseline_ci=base_ci, se_mean=se_mean,
            se_std=se_std, se_n=len(se_values), se_ci=se_ci, delta=se_mean - base_mean,
            delta_ci=None if math.isnan(test['low']) else (test['low'], test['high']),
            welch_t=test['t'], welch_df=test['df'], p_value=test['p'],
            significant=verdict(len(se_values), len(base_values), test)))
    return rows


def _pm(mean: float, std: float | None, n: int, ci: tuple | None) -> str:
    text = f'{mean:.2f}' + (f' ± {std:.2f}' if std is not None else '') + f' (n={n})'
    return text + (f' [{ci[0]:.2f}, {ci[1]:.2f}]' if ci else '')


def starting_weights(work_dir: str) -> dict | None:
    """The checkpoint a run's backbone started from (``init_cfg`` of the config mmengine
    saved in the work dir) and its ImageNet top-1: MMPretrain's published number for a URL
    in its metafiles, the test top-1 of the run that wrote a local checkpoint (the demo's
    mini classifiers), else unknown."""
    from mmengine.config import Config

    from seplugin.zoo import mmpretrain_model
    configs = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'config.py')))
    if not configs:
        return None
    init_cfg = Config.fromfile(configs[-1]).get('model', {}).get('backbone', {}).get(
        'init_cfg')
    init_cfgs = init_cfg if isinstance(init_cfg, list) else [init_cfg]
    checkpoint = next((c['checkpoint'] for c in init_cfgs
                       if c and c.get('type') == 'Pretrained'), None)
    if checkpoint is None:
        return dict(checkpoint='none (from scratch)', top1=None, of='')
    published = mmpretrain_model(checkpoint)
    if published:
        return dict(checkpoint=published['name'], top1=published['top1'],
                    of='MMPretrain metafile, ImageNet-1k')
    run = read_run(osp.dirname(osp.abspath(checkpoint)), 'classification')
    if run.source == 'test' and 'accuracy/top1' in run.metrics:
        return dict(checkpoint=checkpoint, top1=run.metrics['accuracy/top1'],
                    of='test top-1 of the run that wrote it')
    return dict(checkpoint=checkpoint, top1=None, of='')


def markdown(rows: list[dict], paper: str | None, problems: list[str],
             weights: dict[str, list[dict | None]] | None = None) -> str:
    """The comparison table; ``weights`` maps 'baseline'/'se' to :func:`starting_weights`
    of each run."""
    level = f'{LEVEL:.0%}'
    lines = [f'| metric | baseline mean ± std (n) [{level} CI] | SE mean ± std (n) '
             f'[{level} CI] | SE - baseline [{level} CI] | significant (Welch, 5%) |',
             '|---|---:|---:|---:|---|']
    for r in rows:
        delta = f"{r['delta']:+.2f}" + (
            f" [{r['delta_ci'][0]:+.2f}, {r['delta_ci'][1]:+.2f}]" if r['delta_ci'] else '')
        lines.append(
            f"| {r['metric']} | {_pm(r['baseline_mean'], r['baseline_std'], r['baseline_n'], r['baseline_ci'])} "  # noqa: E501
            f"| {_pm(r['se_mean'], r['se_std'], r['se_n'], r['se_ci'])} | {delta} "
            f"| {r['significant']} |")
    if weights and any(w for runs in weights.values() for w in runs):
        lines += ['', 'Starting weights of the backbones (a gap in pretraining accuracy '
                  'confounds the comparison):', '',
                  '| model | starting weights | top-1 |', '|---|---|---:|']
        for model in ('baseline', 'se'):
            for info in {(w['checkpoint'], w['top1'], w['of']) for w in weights.get(model, [])
                         if w}:
                checkpoint, top1, of = info
                value = f'{top1:.2f} ({of})' if top1 is not None else 'unknown'
                lines.append(f'| {"SE" if model == "se" else model} | {checkpoint} | '
                             f'{value} |')
    if paper:
        setting, ref = PAPER[paper]
        lines += ['', f"The paper's result (Hu et al., {setting}), for reference:", '',
                  '| metric | baseline | SE | SE - baseline |', '|---|---:|---:|---:|']
        for name, base in ref['baseline'].items():
            se = ref['se'][name]
            lines.append(f'| {name} | {base:.2f} | {se:.2f} | {se - base:+.2f} |')
        if paper in PAPER_PRETRAINING:
            setting, ref = PAPER[PAPER_PRETRAINING[paper]]
            base, se = ref['baseline']['accuracy/top1'], ref['se']['accuracy/top1']
            lines += ['', f"The paper's detectors started from ImageNet top-1 {base:.2f} "
                      f'(baseline) and {se:.2f} (SE) ({setting}).']
    if problems:
        lines += ['', 'Not in the table:', '']
        lines += [f'- {p}' for p in problems]
    return '\n'.join(lines)


def write_csv(rows: list[dict], path: str) -> None:
    """The rows, each interval as two columns (``*_ci_low``, ``*_ci_high``)."""
    flat = []
    for row in rows:
        out = {}
        for key, value in row.items():
            if key.endswith('_ci'):
                out[f'{key}_low'], out[f'{key}_high'] = value or ('', '')
            else:
                out[key] = value
        flat.append(out)
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(flat[0]) if flat else ['metric'])
        writer.writeheader()
        writer.writerows(flat)


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
