"""Read mmengine work dirs of SE and baseline runs and compare them fairly (several seeds).

Which runs: mmengine's Runner gives every run of a work dir its own log dir,
``<work_dir>/<timestamp>/``. A comparison reads, for each work dir, one training run (its
curves) and the test run of that training (its metrics), never results of another run:
:mod:`seplugin.engine.pairs` names both, as it ran them; for a work dir given by hand the
newest training run is read with the newest test run after it, and the table says which.

Which test: one primary metric (COCO box AP, top-1) is tested at 5%; the other metrics are
secondary, with Holm's correction over those tested. Runs paired by seed (the same seed on
both sides: same initialisation stream and data order, as ``run_pair`` and the demo train
them) get the paired t-test on the per-seed differences, others Welch's t-test; either needs
``MIN_SEEDS`` pairs or runs per model (with 2 the spread is too unreliable to test
anything), and where no test is made no p-value is written. Intervals are 95% t intervals.
"""
import csv
import glob
import json
import math
import os
import os.path as osp
import re
import statistics
from dataclasses import dataclass, field

from scipy import stats

from seplugin.paper import PAPER_PRETRAINING, PAPER_RESULTS

# Fewer runs per model (or pairs) than this: no test.
MIN_SEEDS = 3
LEVEL = 0.95
ALPHA = 1 - LEVEL

# The first metric of each task is the primary one: the only one tested without correction.
METRICS = {
    'detection': ['coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75', 'coco/bbox_mAP_s',
                  'coco/bbox_mAP_m', 'coco/bbox_mAP_l'],
    'classification': ['accuracy/top1', 'accuracy/top5'],
}
# mmdet reports AP in [0, 1], mmpretrain accuracy in percent: tables use percent for both
SCALE = {'detection': 100.0, 'classification': 1.0}
# mmengine's name of a run's log dir (Runner.timestamp)
TIMESTAMP = re.compile(r'^\d{8}_\d{6}$')


@dataclass
class Run:
    """One run of a work dir: the training run's curves and its test run's metrics."""
    work_dir: str
    metrics: dict[str, float] = field(default_factory=dict)
    source: str = ''  # 'test' (tools/test.py results) or 'val' (last validation)
    train: list[dict] = field(default_factory=list)  # scalars.json lines with a loss
    val: list[dict] = field(default_factory=list)    # scalars.json lines with metrics
    problem: str = ''
    train_run: str | None = None  # timestamp of the training run read
    test_run: str | None = None   # timestamp of the test run read
    seed: int | None = None

    @property
    def which(self) -> str:
        """'train 20260101_100000, test 20260101_101500': the log dirs read."""
        parts = [f'{kind} {ts}' for kind, ts in (('train', self.train_run),
                                                   ('test', self.test_run)) if ts]
        return ', '.join(parts) or 'no run'


def _json_lines(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def log_dirs(work_dir: str) -> list[str]:
    """The timestamps of a work dir's runs (mmengine's ``<work_dir>/<timestamp>/``), oldest
    first."""
    if not osp.isdir(work_dir):
        return []
    return sorted(d for d in os.listdir(work_dir)
                  if TIMESTAMP.match(d) and osp.isdir(osp.join(work_dir, d)))


def _scalars(work_dir: str, ts: str) -> list[dict]:
    path = osp.join(work_dir, ts, 'vis_data', 'scalars.json')
    return _json_lines(path) if osp.isfile(path) else []


def _is_training(work_dir: str, ts: str) -> bool:
    return any('loss' in line for line in _scalars(work_dir, ts))


def _test_results(work_dir: str, ts: str, names: list[str]) -> dict | None:
    """The metrics mmengine's LoggerHook wrote for a test run, ``<ts>/<ts>.json``."""
    path = osp.join(work_dir, ts, f'{ts}.json')
    lines = _json_lines(path) if osp.isfile(path) else []
    return lines[-1] if lines and any(n in lines[-1] for n in names) else None


def _saved_config(work_dir: str, ts: str | None):
    """The config mmengine saved for the run ``ts`` (``vis_data/config.py``), or None."""
    if ts is None:
        return None
    path = osp.join(work_dir, ts, 'vis_data', 'config.py')
    if not osp.isfile(path):
        return None
    from mmengine.config import Config
    return Config.fromfile(path)


def _choose(work_dir: str, names: list[str]) -> tuple[str | None, str | None, str]:
    """For a work dir given by hand: its newest training run and the newest test run after
    it (a test from before that training tested an older one); '' or why not."""
    runs = log_dirs(work_dir)
    trainings = [ts for ts in runs if _is_training(work_dir, ts)]
    tests = [ts for ts in runs if _test_results(work_dir, ts, names) is not None]
    train = trainings[-1] if trainings else None
    after = [ts for ts in tests if train is None or ts >= train]
    if after:
        return train, after[-1], ''
    if train and tests:
        return train, None, (f'its newest training run {train} has no test run after it; '
                             f'the test results of {tests[-1]} are of an earlier training')
    return train, None, ''


def read_run(work_dir: str, task: str, train_run: str | None = None,
             test_run: str | None = None, seed: int | None = None) -> Run:
    """One run of a work dir: the runs named (``train_run``, ``test_run``: timestamps of its
    log dirs), or, when none is named, the newest training run and its test run. Without
    test results, the last validation (``source='val'``) is kept."""
    run = Run(work_dir, seed=seed)
    if not osp.isdir(work_dir):
        run.problem = 'work dir does not exist'
        return run
    names = METRICS[task]
    stale = ''
    if train_run is None and test_run is None:
        train_run, test_run, stale = _choose(work_dir, names)
    for ts in (train_run, test_run):
        if ts is not None and not osp.isdir(osp.join(work_dir, ts)):
            run.problem = f'no run {ts} in the work dir'
            return run
    run.train_run, run.test_run = train_run, test_run
    if train_run is not None:
        lines = _scalars(work_dir, train_run)
        run.train = [line for line in lines if 'loss' in line]
        run.val = [line for line in lines if any(n in line for n in names)]
    results = _test_results(work_dir, test_run, names) if test_run else None
    if results:
        run.metrics, run.source = results, 'test'
    elif run.val:
        run.metrics, run.source = run.val[-1], 'val'
    if stale:
        run.problem = stale
    elif test_run is not None and not results:
        run.problem = f'test run {test_run} wrote no {task} metrics'
    elif not run.metrics:
        run.problem = (f'no {task} metrics ({", ".join(names[:2])}...) in test results or '
                       'validation logs: unfinished or failed run?')
    # COCO reports -1 for a size range with no objects in the evaluated set: undefined
    run.metrics = {n: run.metrics[n] * SCALE[task] for n in names
                   if n in run.metrics and run.metrics[n] != -1}
    if run.seed is None:
        cfg = _saved_config(work_dir, train_run or test_run)
        seed = cfg.get('randomness', {}).get('seed') if cfg is not None else None
        run.seed = seed if isinstance(seed, int) else None
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


def pairing(se: list[Run], baseline: list[Run]) -> tuple[bool, str]:
    """Whether the runs pair by seed (each seed once on each side), and the reason."""
    se_seeds, base_seeds = [r.seed for r in se], [r.seed for r in baseline]
    if None in se_seeds + base_seeds:
        return False, 'not paired: a run records no seed'
    if len(set(se_seeds)) < len(se_seeds) or len(set(base_seeds)) < len(base_seeds):
        return False, 'not paired: a seed occurs twice on one side'
    if set(se_seeds) != set(base_seeds):
        return False, (f'not paired: the seeds differ (SE {sorted(se_seeds)}, baseline '
                       f'{sorted(base_seeds)})')
    return True, f'paired by seed ({", ".join(map(str, sorted(se_seeds)))})'


def difference_test(se: list[float], baseline: list[float], paired: bool) -> dict:
    """SE - baseline: the ``LEVEL`` interval of the difference (``low``, ``high``) and the
    t-test (``test``, ``t``, ``df``, ``p``): paired on the per-seed differences
    (``se[i]`` and ``baseline[i]`` share a seed) or Welch's. The test is made only with
    ``MIN_SEEDS`` pairs or runs per model and some seed-to-seed variation; otherwise its
    entries are None and ``why_not`` says why."""
    out = dict(test=None, t=None, df=None, p=None, low=None, high=None, why_not='')
    n = min(len(se), len(baseline))
    if paired:
        differences = [s - b for s, b in zip(se, baseline, strict=True)]
        varies = n >= 2 and statistics.stdev(differences) > 0
    else:
        varies = n >= 2 and statistics.variance(se) + statistics.variance(baseline) > 0
    if n < MIN_SEEDS:
        out['why_not'] = f'needs >= {MIN_SEEDS} {"pairs" if paired else "seeds each"}'
    elif not varies:
        out['why_not'] = 'no seed-to-seed variation'
    if not varies:
        return out
    result = stats.ttest_rel(se, baseline) if paired else \
        stats.ttest_ind(se, baseline, equal_var=False)
    out['low'], out['high'] = result.confidence_interval(LEVEL)
    if out['why_not']:
        return out
    out.update(test='paired t' if paired else 'Welch t', t=float(result.statistic),
               df=float(result.df), p=float(result.pvalue))
    return out


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the given order: the i-th smallest of m is
    multiplied by m - i + 1, kept monotone, capped at 1."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _values(se: list[Run], baseline: list[Run], name: str,
            paired: bool) -> tuple[list[float], list[float]]:
    if not paired:
        return ([r.metrics[name] for r in se if name in r.metrics],
                [r.metrics[name] for r in baseline if name in r.metrics])
    base = {r.seed: r for r in baseline}
    pairs = [(r.metrics[name], base[r.seed].metrics[name]) for r in sorted(
        se, key=lambda r: r.seed) if name in r.metrics and name in base[r.seed].metrics]
    return [s for s, _ in pairs], [b for _, b in pairs]


def compare(se: list[Run], baseline: list[Run], task: str, paired: bool = False) -> list[dict]:
    """One row per metric: mean +- std and the t interval of each model's mean, SE -
    baseline with its interval, the test and whether the difference is significant. With
    ``paired``, ``se`` and ``baseline`` hold one run per seed each (see :func:`pairing`)."""
    rows = []
    for name in METRICS[task]:
        se_values, base_values = _values(se, baseline, name, paired)
        if not se_values or not base_values:
            continue
        (se_mean, se_std), (base_mean, base_std) = summary(se_values), summary(base_values)
        test = difference_test(se_values, base_values, paired)
        rows.append(dict(
            metric=name, role='primary' if name == METRICS[task][0] else 'secondary',
            baseline_mean=base_mean, baseline_std=base_std, baseline_n=len(base_values),
            baseline_ci=mean_interval(base_values), se_mean=se_mean, se_std=se_std,
            se_n=len(se_values), se_ci=mean_interval(se_values), delta=se_mean - base_mean,
            delta_ci=None if test['low'] is None else (test['low'], test['high']),
            test=test['test'], t=test['t'], df=test['df'], p_value=test['p'], p_holm=None,
            why_not=test['why_not']))
    secondary = [r for r in rows if r['role'] == 'secondary' and r['p_value'] is not None]
    for row, adjusted in zip(secondary, holm([r['p_value'] for r in secondary]), strict=True):
        row['p_holm'] = adjusted
    for row in rows:
        row['significant'] = verdict(row)
        del row['why_not']
    return rows


def verdict(row: dict) -> str:
    """'yes'/'no' at 5% (secondary metrics: by their Holm-adjusted p), or why untested."""
    if row['p_value'] is None:
        return f"not tested ({row['why_not']})"
    p, label = (row['p_value'], 'p') if row['role'] == 'primary' else (row['p_holm'],
                                                                        'Holm p')
    answer = 'yes' if p < ALPHA else 'no'
    return f"{answer} ({label} = {p:.3f}, {row['test']} = {row['t']:.2f}, df = {row['df']:.1f})"


def _pm(mean: float, std: float | None, n: int, ci: tuple | None) -> str:
    text = f'{mean:.2f}' + (f' ± {std:.2f}' if std is not None else '') + f' (n={n})'
    return text + (f' [{ci[0]:.2f}, {ci[1]:.2f}]' if ci else '')


def starting_weights(work_dir: str, train_run: str | None = None) -> dict | None:
    """The checkpoint a run's backbone started from (``init_cfg`` of the config mmengine
    saved for the training run ``train_run``, by default the newest run) and its ImageNet
    top-1: MMPretrain's published number for a URL in its metafiles, the top-1 of the test
    run that tested a local checkpoint (the demo's mini classifiers), else unknown."""
    from seplugin.zoo import mmpretrain_model
    runs = log_dirs(work_dir)
    cfg = _saved_config(work_dir, train_run or (runs[-1] if runs else None))
    if cfg is None:
        return None
    init_cfg = cfg.get('model', {}).get('backbone', {}).get('init_cfg')
    init_cfgs = init_cfg if isinstance(init_cfg, list) else [init_cfg]
    checkpoint = next((c['checkpoint'] for c in init_cfgs
                       if c and c.get('type') == 'Pretrained'), None)
    if checkpoint is None:
        return dict(checkpoint='none (from scratch)', top1=None, of='')
    published = mmpretrain_model(checkpoint)
    if published:
        return dict(checkpoint=published['name'], top1=published['top1'],
                    of='MMPretrain metafile, ImageNet-1k')
    top1 = _tested_top1(checkpoint)
    if top1 is not None:
        return dict(checkpoint=checkpoint, top1=top1,
                    of='test top-1 of the run that wrote it')
    return dict(checkpoint=checkpoint, top1=None, of='')


def _tested_top1(checkpoint: str) -> float | None:
    """The top-1 of the newest test run, in the checkpoint's work dir, that tested exactly
    this checkpoint (its saved config's ``load_from``)."""
    work_dir = osp.dirname(osp.abspath(checkpoint))
    for ts in reversed(log_dirs(work_dir)):
        results = _test_results(work_dir, ts, ['accuracy/top1'])
        cfg = _saved_config(work_dir, ts) if results else None
        load_from = cfg.get('load_from') if cfg is not None else None
        if load_from and osp.abspath(load_from) == osp.abspath(checkpoint):
            return results['accuracy/top1'] * SCALE['classification']
    return None


def method_text(task: str, paired: bool, reason: str) -> str:
    """The tests the table makes, in words."""
    primary = METRICS[task][0]
    test = ('paired t-test on the per-seed differences' if paired
            else "Welch's t-test (unequal variances)")
    return (f'Test: {test}; runs {reason}. Primary metric {primary}, tested at 5%; the '
            "others are secondary, significant by Holm's correction over the secondary "
            f'metrics tested. No test with fewer than {MIN_SEEDS} '
            f'{"pairs" if paired else "seeds per model"}.')


def markdown(rows: list[dict], paper: str | None, problems: list[str],
             weights: dict[str, list[dict | None]] | None = None, method: str = '',
             read: list[str] | None = None) -> str:
    """The comparison table; ``weights`` maps 'baseline'/'se' to :func:`starting_weights`
    of each run, ``method`` says which test is made, ``read`` which run of each work dir
    entered the table."""
    level = f'{LEVEL:.0%}'
    lines = [f'| metric | baseline mean ± std (n) [{level} CI] | SE mean ± std (n) '
             f'[{level} CI] | SE - baseline [{level} CI] | p | significant (5%) |',
             '|---|---:|---:|---:|---:|---|']
    for r in rows:
        delta = f"{r['delta']:+.2f}" + (
            f" [{r['delta_ci'][0]:+.2f}, {r['delta_ci'][1]:+.2f}]" if r['delta_ci'] else '')
        p = '' if r['p_value'] is None else f"{r['p_value']:.3f}" + (
            f" (Holm {r['p_holm']:.3f})" if r['p_holm'] is not None else '')
        metric = r['metric'] + (' (primary)' if r['role'] == 'primary' else '')
        lines.append(
            f"| {metric} | {_pm(r['baseline_mean'], r['baseline_std'], r['baseline_n'], r['baseline_ci'])} "  # noqa: E501
            f"| {_pm(r['se_mean'], r['se_std'], r['se_n'], r['se_ci'])} | {delta} | {p} "
            f"| {r['significant']} |")
    if method:
        lines += ['', method]
    if read:
        lines += ['', 'Runs read (log dirs of each work dir):', '']
        lines += [f'- {line}' for line in read]
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
        setting, ref = PAPER_RESULTS[paper]
        lines += ['', f"The paper's result (Hu et al., {setting}), for reference:", '',
                  '| metric | baseline | SE | SE - baseline |', '|---|---:|---:|---:|']
        for name, base in ref['baseline'].items():
            se = ref['se'][name]
            lines.append(f'| {name} | {base:.2f} | {se:.2f} | {se - base:+.2f} |')
        if paper in PAPER_PRETRAINING:
            setting, ref = PAPER_RESULTS[PAPER_PRETRAINING[paper]]
            base, se = ref['baseline']['accuracy/top1'], ref['se']['accuracy/top1']
            lines += ['', f"The paper's detectors started from ImageNet top-1 {base:.2f} "
                      f'(baseline) and {se:.2f} (SE) ({setting}).']
    if problems:
        lines += ['', 'Not in the table (failed or unfinished):', '']
        lines += [f'- {p}' for p in problems]
    return '\n'.join(lines)


def write_csv(rows: list[dict], path: str) -> None:
    """The rows, each interval as two columns (``*_ci_low``, ``*_ci_high``); an entry with
    no value (no test made: ``test``, ``t``, ``df``, ``p_value``) is left empty."""
    flat = []
    for row in rows:
        out = {}
        for key, value in row.items():
            if key.endswith('_ci'):
                out[f'{key}_low'], out[f'{key}_high'] = value or ('', '')
            else:
                out[key] = '' if value is None else value
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
    if loss_ax.get_legend_handles_labels()[0]:  # no curve logged: no legend, no warning
        loss_ax.legend()
    fig.tight_layout()
    paths.append(osp.join(out_dir, 'curves.png'))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def report(se: list[Run], baseline: list[Run], task: str, out_dir: str,
           paper: str | None = None, problems: list[str] | None = None,
           paired: bool | None = None) -> int:
    """Print the comparison of the tested runs and write compare.md, compare.csv and the
    plots to ``out_dir``; runs without test results and ``problems`` (runs that failed before
    writing anything) are listed under the table. ``paired``: None decides by the seeds the
    runs record (:func:`pairing`); True (runs trained as pairs) leaves out a tested run whose
    seed's partner failed, and lists it. 0 when there is a table, else 1."""
    problems = list(problems or [])
    problems += [f'{r.work_dir}: {r.problem}' for r in se + baseline if r.problem]
    problems += [f'{r.work_dir}: no test results (only validation metrics of {r.which}: an '
                 'unfinished run, or tools/test.py not run)' for r in se + baseline
                 if r.source == 'val' and not r.problem]
    se = [r for r in se if r.source == 'test' and not r.problem]
    baseline = [r for r in baseline if r.source == 'test' and not r.problem]
    if paired:
        both = {r.seed for r in se} & {r.seed for r in baseline}
        problems += [f'{r.work_dir}: tested, but the other model failed for seed {r.seed}: '
                     'left out of the paired comparison' for r in se + baseline
                     if r.seed not in both]
        se = [r for r in se if r.seed in both]
        baseline = [r for r in baseline if r.seed in both]
    can_pair, reason = pairing(se, baseline)
    if paired is None:
        paired = can_pair
    elif paired and not can_pair:
        raise ValueError(f'runs trained as pairs do not pair: {reason}')
    rows = compare(se, baseline, task, paired)
    weights = {name: [starting_weights(r.work_dir, r.train_run) for r in runs]
               for name, runs in (('baseline', baseline), ('se', se))}
    read = [f'{name} {r.work_dir}: {r.which}' + ('' if r.seed is None else f', seed {r.seed}')
            for name, runs in (('baseline', baseline), ('SE', se)) for r in runs]
    os.makedirs(out_dir, exist_ok=True)
    text = markdown(rows, paper, problems, weights, method_text(task, paired, reason)
                    if rows else '', read)
    with open(osp.join(out_dir, 'compare.md'), 'w') as f:
        f.write(text + '\n')
    write_csv(rows, osp.join(out_dir, 'compare.csv'))
    pngs = plot(rows, se, baseline, task, out_dir)
    print(text)
    print(f'\nwrote compare.md, compare.csv, {", ".join(osp.basename(p) for p in pngs)} '
          f'to {out_dir}')
    return 0 if rows else 1


def compare_dirs(se_dirs: list[str], baseline_dirs: list[str], task: str | None,
                 out_dir: str, paper: str | None = None) -> int:
    """:func:`report` on work dirs given by hand: of each, its newest training run and the
    test run after it (the table lists which)."""
    if paper is not None and paper not in PAPER_RESULTS:
        raise ValueError(f'--paper {paper!r}: expected one of {sorted(PAPER_RESULTS)}')
    task = task or detect_task(se_dirs + baseline_dirs)
    return report([read_run(d, task) for d in se_dirs],
                  [read_run(d, task) for d in baseline_dirs], task, out_dir, paper)
