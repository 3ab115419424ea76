"""Train-then-test of baseline and SE configs per seed, then their comparison.

One function trains and tests one config for one seed (:func:`train_and_test`, through
``tools/train.py`` and ``tools/test.py`` in subprocesses, so that each run has a fresh
process as a user's would) and records which runs it made: the timestamps of the log dirs
mmengine's Runner made for the training and for the test (``<work_dir>/<timestamp>/``),
the checkpoint, and the status. :func:`compare_records` then reads exactly these runs: a
re-run in a work dir of an earlier run, if it fails, is listed as failed, never shown with
the earlier run's numbers. ``tools/run_pair.py`` and ``tools/demo.py`` are both built on it.
"""
import os
import os.path as osp
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field

from seplugin.analysis.compare import Run, detect_task, log_dirs, read_run, report

TESTED = 'tested'


@dataclass
class Job:
    """One training of one config and seed, followed by the test of its last checkpoint."""
    name: str  # 'baseline' or 'se'
    config: str
    seed: int
    work_dir: str
    options: list[str] = field(default_factory=list)  # --cfg-options besides the seed
    label: str = ''


@dataclass
class Record:
    """What :func:`train_and_test` did: the log dirs it made, the checkpoint, the status."""
    job: Job
    status: str = 'not run'
    train_run: str | None = None  # timestamp of the training's log dir
    test_run: str | None = None   # timestamp of the test's log dir
    checkpoint: str | None = None
    log: str | None = None        # where the output went (None: the terminal)

    @property
    def ok(self) -> bool:
        return self.status == TESTED


PROGRESS = re.compile(r'(?:Iter|Epoch)\(train\)\s*(?:\[\s*(\d+)\])?\s*\[\s*(\d+)/\s*(\d+)\]'
                      r'.*?eta:\s*(\S+).*?\sloss:\s*([\d.]+)')


def progress(line: str, max_epochs: int | None = None) -> str | None:
    """'iter 50/600  ETA 0:02:41  loss 1.2345' from an mmengine training log line."""
    found = PROGRESS.search(line)
    if not found:
        return None
    epoch, i, n, eta, loss = found.groups()
    where = f'iter {i}/{n}' if epoch is None else \
        f'epoch {epoch}/{max_epochs or "?"} iter {i}/{n}'
    return f'{where}  ETA {eta}  loss {float(loss):.4f}'


def run_command(cmd: list[str], log: str | None = None, label: str = '',
                max_epochs: int | None = None) -> bool:
    """Run ``cmd``; True when it succeeds. With ``log``, its output is appended there and
    one terminal line shows the progress; without, the output goes to the terminal."""
    if log is None:
        print('\n$ ' + ' '.join(cmd), flush=True)
        return subprocess.run(cmd).returncode == 0
    tty = sys.stdout.isatty()
    last = 'starting'
    with open(log, 'a') as out:
        out.write('$ ' + ' '.join(cmd) + '\n')
        out.flush()
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    with open(log) as reader:
        while True:
            finished = process.poll() is not None
            for line in reader.readlines():
                last = progress(line, max_epochs) or last
            if tty:
                print(f'\r{label}  {last}'[:150].ljust(150), end='', flush=True)
            if finished:
                break
            time.sleep(0.5)
    return process.returncode == 0


def _new_log_dir(work_dir: str, before: list[str]) -> str | None:
    """The log dir a run made in ``work_dir`` (None: it made none)."""
    new = sorted(set(log_dirs(work_dir)) - set(before))
    if len(new) > 1:
        raise RuntimeError(f'{len(new)} new runs ({", ".join(new)}) appeared in {work_dir} '
                           'during one run: another process uses this work dir')
    return new[0] if new else None


def _checkpoint_of_this_run(work_dir: str, since: float) -> str | None:
    """The checkpoint named by ``last_checkpoint`` if this run wrote it (not older than
    ``since``), else None."""
    pointer = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(pointer) or osp.getmtime(pointer) < since:
        return None
    with open(pointer) as f:
        checkpoint = f.read().strip()
    return checkpoint if osp.isfile(checkpoint) else None


def train_and_test(job: Job, tools: str, log: str | None = None, verbose: bool = False,
                   max_epochs: int | None = None) -> Record:
    """Train ``job.config`` in ``job.work_dir`` with ``tools/train.py``, test its last
    checkpoint with ``tools/test.py``, and record the log dirs both made. ``tools``: the
    folder of the two tools; ``log``: a file for their output (default: the terminal)."""
    record = Record(job, log=log)
    options = ['--cfg-options', f'randomness.seed={job.seed}', *job.options]
    if verbose:
        options.append('--verbose')
    label = job.label or f'{job.name} seed {job.seed}'
    os.makedirs(job.work_dir, exist_ok=True)
    before, start = log_dirs(job.work_dir), time.time()
    ok = run_command([sys.executable, osp.join(tools, 'train.py'), job.config, '--work-dir',
                      job.work_dir, *options], log, label, max_epochs)
    record.train_run = _new_log_dir(job.work_dir, before)
    if not ok:
        record.status = 'training failed'
        return record
    record.checkpoint = _checkpoint_of_this_run(job.work_dir, start)
    if record.train_run is None or record.checkpoint is None:
        record.status = 'training wrote no ' + ('log dir' if record.train_run is None
                                                else 'checkpoint')
        return record
    before = log_dirs(job.work_dir)
    ok = run_command([sys.executable, osp.join(tools, 'test.py'), job.config,
                      record.checkpoint, '--work-dir', job.work_dir, *options], log,
                     label + '  test')
    record.test_run = _new_log_dir(job.work_dir, before)
    if not ok:
        record.status = 'test failed'
    elif record.test_run is None:
        record.status = 'test made no log dir'
    else:
        record.status = TESTED
    return record


def as_run(record: Record, task: str) -> Run:
    """The runs a record names, read (a failed record: a run with its problem)."""
    if record.ok:
        run = read_run(record.job.work_dir, task, record.train_run, record.test_run,
                       record.job.seed)
        run.problem = run.problem and f'{run.problem} (this invocation\'s runs: {run.which})'
        return run
    made = ', '.join(f'{kind} {ts}' for kind, ts in (('train', record.train_run),
                                                     ('test', record.test_run)) if ts)
    where = f'; see {record.log}' if record.log else ''
    return Run(record.job.work_dir, seed=record.job.seed,
               problem=f'{record.status} (this invocation\'s runs: {made or "none"}{where})')


def compare_records(records: list[Record], out_dir: str, paper: str | None = None,
                    task: str | None = None) -> int:
    """The comparison of exactly the runs in ``records`` (SE: ``name == 'se'``), paired by
    seed; failed ones are listed under the table. 0 when there is a table, else 1."""
    tested = [r for r in records if r.ok]
    if not tested:
        print('No run was tested:')
        for r in records:
            print(f'- {r.job.work_dir}: {as_run(r, "classification").problem}')
        return 1
    task = task or detect_task([r.job.work_dir for r in tested])
    se = [as_run(r, task) for r in records if r.job.name == 'se']
    baseline = [as_run(r, task) for r in records if r.job.name == 'baseline']
    return report(se, baseline, task, out_dir, paper, paired=True)


def pair_jobs(baseline: str, se: str, seeds: list[int], work_dir: str,
              options: list[str]) -> list[Job]:
    """Baseline and SE alternating per seed, each in ``<work_dir>/<name>/seed<seed>``, with
    the same options."""
    return [Job(name, config, seed, osp.join(work_dir, name, f'seed{seed}'), list(options))
            for seed in seeds for name, config in (('baseline', baseline), ('se', se))]


def run_pairs(baseline: str, se: str, seeds: list[int], work_dir: str, options: list[str],
              tools: str, paper: str | None = None, verbose: bool = False) -> int:
    """Train and test both configs for every seed, then compare them in
    ``<work_dir>/compare`` (what ``tools/run_pair.py`` does)."""
    records = []
    for job in pair_jobs(baseline, se, seeds, work_dir, options):
        records.append(train_and_test(job, tools, verbose=verbose))
        if not records[-1].ok:
            print(f'!! {job.name} seed {job.seed}: {records[-1].status}; the comparison '
                  'will list it', flush=True)
    return compare_records(records, osp.join(work_dir, 'compare'), paper)
