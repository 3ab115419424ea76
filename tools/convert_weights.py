"""Convert a public checkpoint into seplugin's key layout.

    python tools/convert_weights.py SRC DST --source timm|timm-legacy|cadene|mmpretrain|torchvision

Writes ``{'state_dict': ..., 'meta': ...}`` with mmpretrain's classifier layout (or the bare
backbone with ``--backbone-only``), checks every key and shape against the model it builds,
and prints the backbone config and ``data_preprocessor`` to use with it.
"""
import argparse
import pprint

import torch

from seplugin.checkpoint import load_file
from seplugin.converters import DATA_PREPROCESSORS, SOURCE_PREPROCESSING, SOURCES, convert


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='source checkpoint (.pth/.pt/.bin or .safetensors)')
    parser.add_argument('dst', help='where to write the converted checkpoint')
    parser.add_argument('--source', required=True, choices=SOURCES, help='key layout of src')
    parser.add_argument('--backbone-only', action='store_true',
                        help='write only the backbone keys, without the backbone. prefix')
    args = parser.parse_args()

    state, backbone = convert(load_file(args.src), args.source, args.backbone_only)
    preprocessor = DATA_PREPROCESSORS[SOURCE_PREPROCESSING[args.source]]
    torch.save(dict(state_dict=state,
                    meta=dict(source=args.source, backbone=backbone,
                              data_preprocessor=preprocessor)), args.dst)
    print(f'wrote {len(state)} tensors to {args.dst}')
    print('backbone config:')
    pprint.pprint(backbone, sort_dicts=False)
    print('data_preprocessor:')
    pprint.pprint(preprocessor, sort_dicts=False)
    prefix = '' if args.backbone_only else ", prefix='backbone.'"
    print(f"detection init: init_cfg=dict(type='Pretrained', checkpoint='{args.dst}'{prefix})")


if __name__ == '__main__':
    main()
