"""The README as a new user follows it: every command it shows names a script, module,
config and options that exist, the cheap commands run, and its words about the doctor
agree with the doctor.

Commands come from the ``bash`` code blocks and from inline code that starts with
``python`` or ``bash``; each tool's options are read from its own ``--help``.
"""
import contextlib
import glob
import importlib
import io
import re
import runpy
import shlex
import sys
from functools import cache
from pathlib import Path
from unittest import mock

import pytest

from seplugin import doctor

REPO = Path(__file__).parents[1]
README = '\n'.join(p.read_text() for p in [REPO / 'README.md', *sorted((REPO / 'docs').rglob('*.md'))])
TOOLS = sorted(p.stem for p in (REPO / 'tools').glob('*.py'))
# Options of the distributed launchers go to these tools.
LAUNCHED = {'dist_train.sh': 'train', 'slurm_train.sh': 'train', 'dist_test.sh': 'test',
            'slurm_test.sh': 'test'}
FIXED_ARGS = {'dist_train.sh': 2, 'dist_test.sh': 3, 'slurm_train.sh': 4,
              'slurm_test.sh': 4}


def code_blocks(language: str) -> list[str]:
    return re.findall(rf'```{language}\n(.*?)```', README, re.DOTALL)


def commands() -> list[str]:
    """Each command of the README, continuation lines joined, comments and ``&&`` split."""
    lines = []
    for block in code_blocks('bash'):
        for line in block.replace('\\\n', ' ').splitlines():
            line = re.sub(r'(^|\s)#.*', '', line).strip()
            if line and not re.fullmatch(r'for \w+ in .*; do|done', line):  # a loop's own
                lines.append(line)
    lines += [span for span in re.findall(r'`([^`\n]+)`', README)
              if re.match(r'(python|bash) \S', span)]
    return [part.strip() for line in lines for part in line.split('&&')]


COMMANDS = commands()


@cache
def help_text(tool: str) -> str:
    """``python tools/<tool>.py --help``, run here."""
    out = io.StringIO()
    with mock.patch.object(sys, 'argv', [tool, '--help']), contextlib.redirect_stdout(out), \
            pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(REPO / 'tools' / f'{tool}.py'), run_name='__main__')
    assert exit_.value.code in (0, None), f'{tool} --help exited with {exit_.value.code}'
    return out.getvalue()


@cache
def module_help(name: str) -> str:
    out = io.StringIO()
    module = importlib.import_module(name)
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        module.parse_args(['--help'])
    return out.getvalue()


def options(tokens: list[str]) -> list[str]:
    """The ``--options`` among a command's tokens (``[--resume [CKPT]]`` -> --resume)."""
    found = []
    for token in tokens:
        token = token.strip('[]')
        if token.startswith('--'):
            found.append(token.split('=')[0])
    return found


def expand(pattern: str) -> list[str]:
    """``a{1,2}b`` -> ``a1b``, ``a2b``."""
    match = re.search(r'\{([^{}]*)\}', pattern)
    if not match:
        return [pattern]
    return [name for part in match[1].split(',')
            for name in expand(pattern[:match.start()] + part + pattern[match.end():])]


def assert_options_known(opts: list[str], help_: str, what: str) -> None:
    for option in opts:
        assert re.search(rf'(?<![\w-]){re.escape(option)}(?![\w-])', help_), \
            f'the README gives {what} the option {option}, which its --help does not know'


def test_the_readme_has_commands():
    assert any(c.startswith('python tools/train.py') for c in COMMANDS)
    assert any(c.startswith('bash tools/dist_train.sh') for c in COMMANDS)


@pytest.mark.parametrize('command', COMMANDS)
def test_each_command_names_what_exists(command):
    tokens = shlex.split(command)
    while tokens and re.fullmatch(r'[A-Z_]+=\S*', tokens[0]):  # NNODES=2 ... bash ...
        tokens.pop(0)
    program, args = tokens[0], tokens[1:]
    if program == 'source':
        assert args == ['.venv/bin/activate']  # made by tools/setup_env.sh
        return
    if program == 'pip':  # seplugin itself, with or without the test extras
        assert args in (['install', '-e', '.'], ['install', '-e', '.[tests]']), command
        return
    if program == 'bash':
        script = args[0]
        assert (REPO / script).is_file(), f'{script} does not exist'
        name = Path(script).name
        if name in LAUNCHED:
            rest = args[1 + FIXED_ARGS[name]:]
            assert_options_known(options(rest), help_text(LAUNCHED[name]), script)
    else:
        assert program == 'python', command
        if args[0] == '-m':
            module = args[1]
            if module == 'pytest':
                return
            assert importlib.util.find_spec(module), f'no module {module}'
            if module != 'seplugin.doctor':
                assert_options_known(options(args[2:]), module_help(module), module)
        else:
            script = args[0]
            assert (REPO / script).is_file(), f'{script} does not exist'
            assert_options_known(options(args[1:]), help_text(Path(script).stem), script)
    for token in args:
        if token.startswith('configs/'):
            assert all(glob.glob(str(REPO / path)) for path in expand(token)), token


def test_every_tool_answers_help():
    for tool in TOOLS:
        assert 'usage:' in help_text(tool), tool


# Backticked file names of the README: configs (also named without ``configs/``), tools,
# package files, docs; and what tools/compare.py writes.
FILE_NAME = re.compile(r'^[\w./{},*-]+\.(py|sh|toml|png|md)$')
WRITTEN = {'compare.md', 'curves.png', 'metrics.png'}


def test_every_file_named_exists():
    names = {span for span in re.findall(r'`([^`\s]+)`', README) if FILE_NAME.match(span)}
    names |= {cell for row in re.findall(r'^\|.*\|$', README, re.MULTILINE)
              for cell in re.findall(r'`([^`\s]+)`', row) if FILE_NAME.match(cell)}
    assert len(names) > 20
    missing = []
    for name in sorted(names):
        for path in expand(name):
            if path not in WRITTEN and not any(glob.glob(str(root / path)) for root in (
                    REPO, REPO / 'configs', REPO / 'tools')):
                missing.append(path)
    assert not missing, f'the README names files that do not exist: {missing}'


def test_the_doctor_runs_and_the_readme_names_its_checks(capsys):
    assert doctor.main() == 0
    out = capsys.readouterr().out
    words = {1: 'one', 2: 'two', 3: 'three', 4: 'four', 5: 'five', 6: 'six'}
    page = (REPO / 'docs' / 'get_started.md').read_text()
    assert f'runs {words[len(doctor.CHECKS)]} checks' in page
    section = page[page.index('### Environment doctor'):page.index('### Checkpoints')]
    for name in doctor.CHECKS:
        assert f'- `{name}`' in section, name
        assert f'] {name}' in out


@pytest.mark.slow
def test_complexity_paper_reproduces_the_tables(capsys):
    """``python tools/complexity.py --paper`` (builds the ResNets up to 152 layers and
    counts their FLOPs: about a minute of CPU)."""
    with mock.patch.object(sys, 'argv', ['complexity', '--paper']):
        runpy.run_path(str(REPO / 'tools' / 'complexity.py'), run_name='__main__')
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith('| ') and 'SE-ResNet' in line]
    assert rows and not any(line.rstrip(' |').endswith('NO') for line in rows)


def test_the_checks_catch_what_is_wrong():
    """The checks above can fail: an option no tool has, a config that is not there."""
    with pytest.raises(AssertionError, match='--no-such-option'):
        assert_options_known(['--no-such-option'], help_text('train'), 'tools/train.py')
    assert not all(glob.glob(str(REPO / p)) for p in expand('configs/imagenet/se{x,y}.py'))
