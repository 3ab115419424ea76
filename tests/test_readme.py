"""The README and every page of docs/ as a new user follows them: every command they show
names a script, module, config and options that exist, the cheap commands run, every file
they name exists, every relative link resolves (anchors included), every page is reachable
from the README, and their words about the doctor and ``tools/complexity.py --paper`` agree
with what those print.

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
PAGES = ['README.md', *sorted(str(p.relative_to(REPO)) for p in (REPO / 'docs').rglob('*.md'))]
TEXT = {page: (REPO / page).read_text() for page in PAGES}
TOOLS = sorted(p.stem for p in (REPO / 'tools').glob('*.py'))
# Options of the distributed launchers go to these tools.
LAUNCHED = {'dist_train.sh': 'train', 'slurm_train.sh': 'train', 'dist_test.sh': 'test',
            'slurm_test.sh': 'test'}
FIXED_ARGS = {'dist_train.sh': 2, 'dist_test.sh': 3, 'slurm_train.sh': 4,
              'slurm_test.sh': 4}
# The pip commands the pages may give: seplugin from a clone (with or without the test
# extras, optionally holding the environment's versions), a built wheel, and openmim.
PIP_FORMS = (['install', '-e', '.'], ['install', '-e', '.[tests]'],
             ['install', '-e', '.[tests]', '-c', 'constraints.txt'],
             ['install', '-e', '.', '-c', 'constraints.txt'],
             ['install', 'openmim'], ['wheel', '--no-deps', '-w', 'dist', '.'])


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf'```{language}\n(.*?)```', text, re.DOTALL)


def commands(text: str) -> list[str]:
    """Each command of a page, continuation lines joined, comments and ``&&`` split."""
    lines = []
    for block in code_blocks(text, 'bash'):
        for line in block.replace('\\\n', ' ').splitlines():
            line = re.sub(r'(^|\s)#.*', '', line).strip()
            if line and not re.fullmatch(r'for \w+ in .*; do|done', line):  # a loop's own
                lines.append(line)
    lines += [span for span in re.findall(r'`([^`\n]+)`', text)
              if re.match(r'(python|bash) \S', span)]
    return [part.strip() for line in lines for part in line.split('&&')]


COMMANDS = [(page, command) for page in PAGES for command in commands(TEXT[page])]


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
            f'the docs give {what} the option {option}, which its --help does not know'


def test_the_pages_have_commands():
    every = [command for _, command in COMMANDS]
    assert any(c.startswith('python tools/train.py') for c in every)
    assert any(c.startswith('bash tools/dist_train.sh') for c in every)


def test_the_readme_keeps_the_two_commands_ci_and_users_run():
    """.ci/run runs the README's test command verbatim; the main job is the README's."""
    for command in ('bash tools/setup_env.sh && source .venv/bin/activate && python tools/demo.py',
                    'bash tools/setup_env.sh && source .venv/bin/activate && python -m pytest'):
        assert f'```bash\n{command}\n```' in TEXT['README.md']
        assert command in (REPO / '.ci' / 'run').read_text() or command.endswith('demo.py')


def config_exists(token: str) -> bool:
    return all(glob.glob(str(REPO / path)) for path in expand(token))


@pytest.mark.parametrize('page,command', COMMANDS, ids=[f'{p}: {c}' for p, c in COMMANDS])
def test_each_command_names_what_exists(page, command):
    tokens = shlex.split(command)
    while tokens and re.fullmatch(r'[A-Z_]+=\S*', tokens[0]):  # NNODES=2 ... bash ...
        tokens.pop(0)
    program, args = tokens[0], tokens[1:]
    if program == 'source':
        assert args == ['.venv/bin/activate']  # made by tools/setup_env.sh
        return
    if program == 'pip':
        if args[0] in ('freeze', 'list'):  # pip list ... | grep ... > constraints.txt
            assert args[-2:] == ['>', 'constraints.txt'], command
        else:
            assert args in PIP_FORMS, command
        return
    if program == 'mim':  # openmim, on the installed package
        assert args[1] == 'seplugin', command
        if args[0] in ('train', 'test'):
            assert glob.glob(str(REPO / 'configs' / '**' / args[2]), recursive=True), command
        else:
            assert args[0] == 'search', command
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
                paths = [a for i, a in enumerate(args[2:]) if not a.startswith('-')
                         and not (i and args[1 + i] in ('-m', '-k'))]  # not a mark
                for path in paths:
                    assert (REPO / path.split('::')[0]).exists(), path
                return
            assert importlib.util.find_spec(module), f'no module {module}'
            if module != 'seplugin.doctor':
                assert_options_known(options(args[2:]), module_help(module), module)
        elif args[0] != '-c':
            script = args[0]
            assert (REPO / script).is_file(), f'{script} does not exist'
            assert_options_known(options(args[1:]), help_text(Path(script).stem), script)
    for token in args:
        if token.startswith('configs/'):
            assert config_exists(token), token


def test_every_tool_answers_help():
    for tool in TOOLS:
        assert 'usage:' in help_text(tool), tool


# Backticked file names of the pages: configs (also named without ``configs/``), tools,
# package files, docs; and what tools/compare.py writes.
FILE_NAME = re.compile(r'^[\w./{},*-]+\.(py|sh|toml|png|md|yml)$')
WRITTEN = {'compare.md', 'curves.png', 'metrics.png'}


def file_names(text: str) -> set[str]:
    names = {span for span in re.findall(r'`([^`\s]+)`', text) if FILE_NAME.match(span)}
    return names | {cell for row in re.findall(r'^\|.*\|$', text, re.MULTILINE)
                    for cell in re.findall(r'`([^`\s]+)`', row) if FILE_NAME.match(cell)}


def test_the_pages_name_files():
    assert len(set().union(*(file_names(text) for text in TEXT.values()))) > 20


@pytest.mark.parametrize('page', PAGES)
def test_every_file_named_exists(page):
    missing = []
    for name in sorted(file_names(TEXT[page])):
        for path in expand(name):
            if path not in WRITTEN and not any(glob.glob(str(root / path)) for root in (
                    REPO, REPO / 'configs', REPO / 'tools', (REPO / page).parent)):
                missing.append(path)
    assert not missing, f'{page} names files that do not exist: {missing}'


# Markdown links and images; code blocks are not text.
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)\)')


def prose(text: str) -> str:
    return re.sub(r'```.*?```', '', text, flags=re.DOTALL)


def relative_links(text: str) -> list[str]:
    return [target for target in LINK.findall(prose(text))
            if not re.match(r'[a-z][a-z+]*:', target)]  # https:, mailto:


def anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    return {re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')
            for heading in re.findall(r'^#+ (.*)$', prose(text), re.MULTILINE)}


def broken_links(page: str, text: str) -> list[str]:
    broken = []
    for target in relative_links(text):
        path, _, anchor = target.partition('#')
        file = ((REPO / page).parent / path).resolve() if path else REPO / page
        if not file.exists() or (anchor and anchor not in anchors(file.read_text())):
            broken.append(target)
    return broken


@pytest.mark.parametrize('page', PAGES)
def test_every_relative_link_resolves(page):
    assert not broken_links(page, TEXT[page]), f'{page}: broken links'


def reachable(texts: dict[str, str]) -> set[str]:
    """The pages linked from the README, directly or through linked pages."""
    seen, todo = {'README.md'}, ['README.md']
    while todo:
        page = todo.pop()
        for target in relative_links(texts[page]):
            path = target.partition('#')[0]
            if path.endswith('.md'):
                linked = str(((REPO / page).parent / path).resolve().relative_to(REPO))
                if linked in texts and linked not in seen:
                    seen.add(linked)
                    todo.append(linked)
    return seen


def test_every_page_is_linked_from_the_readme_or_a_linked_page():
    orphans = sorted(set(PAGES) - reachable(TEXT))
    assert not orphans, f'pages no reader reaches from the README: {orphans}'


def test_the_doctor_runs_and_the_docs_name_its_checks(capsys):
    assert doctor.main() == 0
    out = capsys.readouterr().out
    words = {1: 'one', 2: 'two', 3: 'three', 4: 'four', 5: 'five', 6: 'six'}
    page = TEXT['docs/get_started.md']
    assert f'runs {words[len(doctor.CHECKS)]} checks' in page
    section = page[page.index('### Environment doctor'):page.index('### Checkpoints')]
    for name in doctor.CHECKS:
        assert f'- `{name}`' in section, name
        assert f'] {name}' in out


# What docs/compare.md says of ``tools/complexity.py --paper``: every exact parameter count
# equals timm's and MMPretrain's; GFLOPs within 0.16% of Table 2; of the ten parameter
# counts of Tables 10 and 13, rounding up to 0.1M matches all ten, ordinary rounding six.
GFLOPS_TOLERANCE_PERCENT = 0.16


def paper_tables_printed(out: str) -> dict[str, list[list[str]]]:
    """The tables ``complexity.py --paper`` prints: ``## title`` -> data rows' cells."""
    tables, title = {}, None
    for line in out.splitlines():
        if line.startswith('## '):
            title = line[3:].strip()
            tables[title] = []
        elif title is not None and line.startswith('|') and not line.startswith('|---'):
            tables[title].append([cell.strip() for cell in line.strip().strip('|').split('|')])
    return {title: rows[1:] for title, rows in tables.items()}  # the header row dropped


def check_paper_tables(out: str, counts: dict) -> None:
    tables = paper_tables_printed(out)
    params = tables['parameters']
    assert len(params) == len(counts), params
    for row in params:
        assert row[-1] == 'yes', f'seplugin differs from timm and MMPretrain: {row}'
    gflops = tables['GFLOPs (Table 2)']
    assert gflops
    for row in gflops:
        assert abs(float(row[-1].rstrip('%'))) <= GFLOPS_TOLERANCE_PERCENT, row
    rows = tables['reduction ratio (Table 10)'] + tables['stages (Table 13)']
    assert len(rows) == 10
    assert not [row for row in rows if '(differs)' in row[-1]], rows
    assert sum('(differs)' not in row[-2] for row in rows) == 6, rows


def complexity_paper(capsys) -> str:
    with mock.patch.object(sys, 'argv', ['complexity', '--paper']):
        runpy.run_path(str(REPO / 'tools' / 'complexity.py'), run_name='__main__')
    return capsys.readouterr().out


@pytest.mark.slow
def test_complexity_paper_reproduces_the_tables(capsys):
    """``python tools/complexity.py --paper`` (builds the ResNets up to 152 layers and
    counts their FLOPs: about a minute of CPU)."""
    from seplugin.analysis.complexity import IMPLEMENTATION_PARAMS
    check_paper_tables(complexity_paper(capsys), IMPLEMENTATION_PARAMS)


def test_the_complexity_check_reads_what_the_tool_prints(capsys):
    """The check above on the tool's own printing of given rows (no model built): it
    passes on rows that agree and fails on a count that differs, a GFLOPs gap beyond the
    tolerance, a rounding that no longer matches, and on output it cannot find."""
    from seplugin.analysis import complexity

    def tables(params_ok=True, gflops=3.858, stage=25.557032):
        counted = {('SEResNet', 50): 28_088_024, ('ResNet', 50): 25_557_032}
        ratio = [dict(name=f'SE-ResNet-50 r={r}', paper=p, ours=o) for r, p, o in (
            (2, 45.7, 45.7), (4, 35.7, 35.63), (8, 30.7, 30.62), (16, 28.1, 28.088024),
            (32, 26.9, 26.83))]
        stages = [dict(name=n, paper=p, ours=o) for n, p, o in (
            ('ResNet-50', 25.6, stage), ('SE_Stage_2', 25.6, 25.6), ('SE_Stage_3', 25.7, 25.7),
            ('SE_Stage_4', 26.4, 26.4), ('SE_All', 28.1, 28.04))]
        return counted, {
            'parameters': [dict(name=f'{k}-{d}', paper=None, implementations=n,
                                ours=n if params_ok else n + 1) for (k, d), n in counted.items()],
            'reduction ratio (Table 10)': ratio, 'stages (Table 13)': stages,
            'GFLOPs (Table 2)': [dict(name='ResNet-50', paper=3.86, ours=gflops)]}

    def printed(**kwargs):
        counted, rows = tables(**kwargs)
        with mock.patch.object(complexity, 'paper_tables', lambda: rows):
            return complexity_paper(capsys), counted

    check_paper_tables(*printed())
    with pytest.raises(AssertionError, match='differs from timm'):
        check_paper_tables(*printed(params_ok=False))
    with pytest.raises(AssertionError):
        check_paper_tables(*printed(gflops=3.80))  # -1.55%
    with pytest.raises(AssertionError):
        check_paper_tables(*printed(stage=25.5))  # rounded up: 25.5, the paper 25.6
    with pytest.raises(KeyError):
        check_paper_tables(printed()[0].replace('## ', '### '), printed()[1])


def test_the_checks_catch_what_is_wrong():
    """The checks above can fail: an option no tool has, a config that is not there, a link
    to a missing page or anchor, a page nothing links to."""
    with pytest.raises(AssertionError, match='--no-such-option'):
        assert_options_known(['--no-such-option'], help_text('train'), 'tools/train.py')
    assert not config_exists('configs/imagenet/se{x,y}.py')
    assert broken_links('docs/x.md', '[a](nowhere.md) [b](compat.md#no-such-heading)') == [
        'nowhere.md', 'compat.md#no-such-heading']
    assert not broken_links('docs/x.md', '[a](compat.md) [b](../README.md#features)')
    texts = dict(TEXT, **{'docs/orphan.md': '# Orphan\n'})
    assert 'docs/orphan.md' not in reachable(texts)
