"""What a run of ``tools/train.py`` or ``tools/test.py`` prints, and what only its log file
gets.

mmengine's Runner prints everything it logs: the environment block, the whole config, the
hook table, then the training. By default the tools keep the console to the lines a person
follows a run by (one line per phase, mmengine's own progress lines with iterations, ETA
and loss, warnings and results) and leave the rest, Python warnings included, to the run's
log file (``<work_dir>/<timestamp>/<timestamp>.log``). ``--verbose`` restores mmengine's
full console output. An error ends the output as one line naming it; its traceback goes to
the log file.
"""
import contextlib
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Callable

# full: --verbose; log_files: the files of the run's logger, once the runner has made it
_state = dict(full=False, pending_warnings=[], showwarning=None, log_files=[])

# INFO lines that reach the console: progress (``Epoch(train) [1][ 8/16] ... eta ...
# loss ...``, ``Iter(val) ...``, and their results), and the phases of a run.
PROGRESS_PREFIXES = ('Epoch(', 'Iter(')
PHASE_PREFIXES = ('resumed epoch', 'Load checkpoint from', 'Saving checkpoint',
                  'Checkpoints will be saved', 'The best checkpoint', 'Results has been saved',
                  'seplugin:')


def set_full_console(full: bool) -> None:
    """Print everything mmengine logs (``--verbose``), or only the lines above (default).

    In the quiet default, Python warnings are written to the run's log file instead of the
    terminal (held back until the log file exists)."""
    _state['full'] = full
    if full:
        if _state['showwarning'] is not None:
            warnings.showwarning = _state['showwarning']
            _state['showwarning'] = None
    elif _state['showwarning'] is None:
        _state['showwarning'] = warnings.showwarning
        warnings.showwarning = _warning_to_log


def _write_to_log(text: str) -> list[str]:
    files = _state['log_files']
    for name in files:
        with open(name, 'a') as f:
            f.write(text if text.endswith('\n') else text + '\n')
    return files


def _warning_to_log(message, category, filename, lineno, file=None, line=None) -> None:
    text = warnings.formatwarning(message, category, filename, lineno, line)
    if not _write_to_log(text):
        _state['pending_warnings'].append(text)


class QuietConsole(logging.Filter):
    """Keeps the INFO lines other than progress and phases, and the deprecation notices
    of the libraries, off the console."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            return True
        if record.levelno >= logging.WARNING:
            return 'deprecated' not in message
        return message.startswith(PROGRESS_PREFIXES + PHASE_PREFIXES)


class ShortFormatter(logging.Formatter):
    """``12:47:31 message`` (``12:47:31 WARNING: message`` from warnings up)."""

    def __init__(self):
        super().__init__(datefmt='%H:%M:%S')

    def format(self, record: logging.LogRecord) -> str:
        level = f'{record.levelname}: ' if record.levelno >= logging.WARNING else ''
        return f'{self.formatTime(record, self.datefmt)} {level}{record.getMessage()}'


def attach_console(logger: logging.Logger) -> None:
    """Make a runner's logger the run's: errors and Python warnings go to its log file
    (those held back so far too), and its console is quiet unless ``--verbose``."""
    _state['log_files'] = [h.baseFilename for h in logger.handlers
                           if isinstance(h, logging.FileHandler)]
    if _state['full']:
        return
    for handler in logger.handlers:
        if type(handler) is logging.StreamHandler and handler.stream in (sys.stdout,
                                                                         sys.stderr):
            if not any(isinstance(f, QuietConsole) for f in handler.filters):
                handler.addFilter(QuietConsole())
                handler.setFormatter(ShortFormatter())
    pending, _state['pending_warnings'] = _state['pending_warnings'], []
    if pending:
        _write_to_log(''.join(pending))


@contextlib.contextmanager
def prints_to_log():
    """Within this context, what libraries ``print`` (pycocotools' "loading annotations
    into memory...", its evaluation tables) goes to the run's log file instead of the
    console, unless ``--verbose``. The run's logger keeps printing its lines."""
    if _state['full'] or not _state['log_files']:
        yield
        return
    with open(_state['log_files'][0], 'a', buffering=1) as f, contextlib.redirect_stdout(f):
        yield


def phase(message: str, logger: logging.Logger | None = None) -> None:
    """One line of a run's progress: through the run's ``logger`` (console and log file)
    when there is one, else printed by the first process."""
    if logger is not None:
        logger.info(f'seplugin: {message}')
    elif os.environ.get('RANK', '0') == '0':
        print(f'seplugin: {message}', flush=True)


def run_tool(main: Callable[[], object], verbose: bool) -> None:
    """Run a tool's ``main``; an error ends the output as one line, ``error: ...``, and its
    traceback goes to the run's log file (with ``--verbose``, the traceback is printed as
    Python prints it)."""
    set_full_console(verbose)
    _state['log_files'] = []
    try:
        main()
    except Exception as e:
        exit_on_error(e, verbose)


def exit_on_error(error: Exception, verbose: bool) -> None:
    """End the output with one line naming ``error`` and exit 1; the traceback goes to the
    run's log file, if there is one. With ``verbose``, re-raise: Python prints the traceback.
    Call it from an ``except`` block. The tools that make no run (``compare.py``,
    ``convert_weights.py``, ...) call it from their ``__main__`` block, so that ``--help``
    imports nothing heavy and tests of their ``main`` see the exception itself."""
    if verbose:
        raise error
    files = _write_to_log('Traceback of the error that ended the run:\n'
                          + traceback.format_exc())
    # str(KeyError('x')) is "'x'": a KeyError's message is its argument
    message = error.args[0] if isinstance(error, KeyError) and len(error.args) == 1 \
        and isinstance(error.args[0], str) else str(error)
    message = ' '.join(line.strip() for line in message.splitlines() if line.strip())
    where = f' (traceback in {files[0]})' if files else ' (--verbose shows the traceback)'
    sys.stdout.flush()
    print(f'error: {type(error).__name__}: {message}{where}', file=sys.stderr, flush=True)
    sys.exit(1)


def hide_setuptools_notice() -> None:
    """Keep setuptools' "pkg_resources is deprecated" notice off a tool's terminal: mmengine
    imports pkg_resources, and the notice is setuptools' business, not the user's. Tools call
    it; ``import seplugin`` does not touch warnings filters."""
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
