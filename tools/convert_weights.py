"""Convert a public checkpoint into seplugin's key layout.

    python tools/convert_weights.py SRC DST --source timm|timm-legacy|cadene|mmpretrain|torchvision

SRC: a ``.pth``/``.pt``/``.bin`` or ``.safetensors`` file; a bare state dict or one under
``state_dict``/``model``, with or without DataParallel's ``module.``. Writes
``{'state_dict': ..., 'meta': ...}`` with mmpretrain's classifier layout (or the bare
backbone with ``--backbone-only``), checks every key and shape against the model it builds,
and prints the backbone config (with the ``se_cfg`` the file's squeeze widths need), the
``data_preprocessor`` and the ``init_cfg`` to use with it.
"""
import argparse
import os.path as osp
import pprint
import re
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='source checkpoint (.pth/.pt/.bin or .safetensors)')
    parser.add_argument('dst', help='where to write the converted checkpoint')
    parser.add_argument('--source', required=True,
                        help='key layout of src (see the list above; a name it does not know '
                             'gets the list)')
    parser.add_argument('--backbone-only', action='store_true',
                        help='write only the backbone keys, without the backbone. prefix')
    parser.add_argument('--verbose', action='store_true',
                        help='on an error, print its traceback')
    args = parser.parse_args(argv)
    from seplugin.cli.console import hide_setuptools_notice
    hide_setuptools_notice()

    import torch

    from seplugin.checkpoint import load_file
    from seplugin.converters import (
        DATA_PREPROCESSORS,
        SOURCE_PREPROCESSING,
        SOURCES,
        ConversionError,
        convert,
    )
    if args.source not in SOURCES:
        parser.error(f'--source {args.source!r}: expected one of {SOURCES}')

    if re.search(r'resnext?aa\d', osp.basename(args.src)):
        print(f'error: {args.src} is named after a timm "aa" model (anti-aliased, average '
              'pooled strides): its keys are those of the "d" model but it computes '
              'differently, and seplugin has no such block', file=sys.stderr)
        return 2
    notes = []
    try:
        state, backbone = convert(load_file(args.src), args.source, args.backbone_only, notes)
    except ConversionError as e:
        print(f'error: {args.src}: {e}', file=sys.stderr)
        return 1
    preprocessor = DATA_PREPROCESSORS[SOURCE_PREPROCESSING[args.source]]
    torch.save(dict(state_dict=state,
                    meta=dict(source=args.source, backbone=backbone,
                              data_preprocessor=preprocessor)), args.dst)
    print(f'wrote {len(state)} tensors to {args.dst}')
    for note in notes:
        print(f'note: {note}')
    print('backbone config (use it as it is: e.g. se_cfg sets the squeeze widths):')
    pprint.pprint(backbone, sort_dicts=False)
    print('data_preprocessor:')
    pprint.pprint(preprocessor, sort_dicts=False)
    prefix = '' if args.backbone_only else ", prefix='backbone.'"
    print(f"detection init: init_cfg=dict(type='Pretrained', checkpoint='{args.dst}'{prefix})")
    return 0


if __name__ == '__main__':
    try:
        raise SystemExit(main())
    except Exception as error:
        from seplugin.cli.console import exit_on_error
        exit_on_error(error, verbose='--verbose' in sys.argv)
