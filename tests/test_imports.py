"""seplugin's modules import each other without a circle, function-level imports included:
every ``import`` and ``from ... import`` of every module, read with ``ast``."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / 'seplugin'


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The seplugin modules that ``path`` imports anywhere in it (top level or inside
    functions); ``from package import name`` counts as the submodule when there is one."""
    name = module_name(path)
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = package.split('.')[:len(package.split('.')) - node.level + 1]
                base = '.'.join(anchor + ([base] if base else []))
            targets = [f'{base}.{alias.name}' if f'{base}.{alias.name}' in modules else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # 'seplugin.x.func' -> 'seplugin.x'
                target = target.rpartition('.')[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob('*.py'))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports(p, modules) for p in paths}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle found by a depth-first walk, as the modules along it."""
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = 'open'
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 'open':
                found.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 'done'

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def test_the_walk_sees_function_level_and_relative_imports():
    edges = graph()
    # inside a function of compare.py; relative, at the top of the package's __init__
    assert 'seplugin.zoo' in edges['seplugin.analysis.compare']
    assert 'seplugin.checkpoint' in edges['seplugin']
    assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == [['a', 'b', 'c', 'a']]
    assert cycles({'a': {'b'}, 'b': set()}) == []


def test_no_import_circle():
    assert cycles(graph()) == []
