"""Write (or check) the model zoo: configs/**/metafile.yml, model-index.yml, README table.

    python tools/model_zoo.py [--check]

The content comes from the configs (their starting weights), the installed MMPretrain's
metafiles (those weights' ImageNet top-1) and the paper's numbers in
seplugin.paper.PAPER_RESULTS. ``--check`` writes nothing and fails when a file differs.
"""
import argparse
import os.path as osp
import re
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
START, END = '<!-- model-zoo table start -->', '<!-- model-zoo table end -->'


def expected_files() -> dict[str, str]:
    from seplugin.zoo import dump, metafiles, model_index, readme_table
    contents = metafiles(ROOT)
    files = {path: dump(content) for path, content in contents.items()}
    files['model-index.yml'] = model_index()
    with open(osp.join(ROOT, 'README.md')) as f:
        readme = f.read()
    if START not in readme or END not in readme:
        raise SystemExit(f'README.md has no {START} ... {END} section')
    files['README.md'] = re.sub(re.escape(START) + '.*?' + re.escape(END),
                                lambda _: f'{START}\n{readme_table(contents)}\n{END}',
                                readme, flags=re.S)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true', help='fail if a file is outdated')
    args = parser.parse_args(argv)
    stale = []
    for path, text in expected_files().items():
        full = osp.join(ROOT, path)
        current = open(full).read() if osp.exists(full) else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            with open(full, 'w') as f:
                f.write(text)
    if args.check and stale:
        print(f'out of date: {", ".join(stale)}; run python tools/model_zoo.py',
              file=sys.stderr)
        return 1
    print(f'{"outdated" if args.check else "written"}: {", ".join(stale) or "nothing"}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
