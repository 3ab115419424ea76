"""What the generators of the mini data sets (``mini_coco``, ``mini_cls``) share."""
import os
import os.path as osp


def prepare_out(out: str, overwrite: bool) -> None:
    """Create ``out``; a folder with files in it is refused unless ``overwrite``, so that a
    mistyped ``--out`` does not silently mix generated files into other data."""
    if osp.isdir(out) and os.listdir(out) and not overwrite:
        raise FileExistsError(f'{out} exists and is not empty; choose a new folder or pass '
                              'overwrite=True (--overwrite), which rewrites the generated '
                              'files in place and leaves other files alone')
    os.makedirs(out, exist_ok=True)
