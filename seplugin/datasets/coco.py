"""MMDetection's CocoDataset with up-front checks of its files and categories."""
import os.path as osp
import warnings

from mmdet.datasets import CocoDataset
from mmdet.datasets.api_wrappers import COCO
from mmengine.fileio import exists

from seplugin.registry import register_dataset

# How many missing images, and classes of the config, an error lists by name.
SHOWN_MISSING = 5
SHOWN_CLASSES = 5


class CheckedCocoDataset(CocoDataset):
    """``CocoDataset`` that stops with a clear message on bad input, before training starts.

    MMDetection's ``CocoDataset`` fails late or not at all on common mistakes: a missing
    image is found when the pipeline first loads it (maybe hours into training); annotations
    whose category is not in ``metainfo['classes']`` are dropped silently, and when no class
    of the config is in the file, every image is filtered out. This class checks, when the
    annotation file is loaded:

    - the annotation file exists;
    - some class of ``metainfo['classes']`` is a category (by name) of the file;
    - every category of the file is one of the classes, unless ``allow_unused_categories``
      (else their annotations would be dropped);
    - every annotation's ``category_id`` is a category of the file;
    - every image file exists (local files only, unless ``check_images=False``).

    A file whose categories are a subset of the classes (e.g. a few COCO categories with
    the COCO config's 80 classes) loads as with ``CocoDataset``, every annotation and the
    same labels, with a warning naming the classes the file lacks.

    Args:
        allow_unused_categories (bool): Accept categories of the file that are not in
            ``metainfo['classes']`` and drop their annotations, as ``CocoDataset`` does, to
            train on a subset of the classes. Defaults to False.
        check_images (bool): Check that every image file exists. Done only for local paths
            (``backend_args`` None). Defaults to True.
        **kwargs: Every argument of ``mmdet.datasets.CocoDataset``.
    """

    def __init__(self, *args, allow_unused_categories: bool = False,
                 check_images: bool = True, **kwargs) -> None:
        # Set before super().__init__, which loads (and so checks) the annotations.
        self.allow_unused_categories = allow_unused_categories
        self.check_images = check_images
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> list[dict]:
        """Check that the annotation file exists, then load it as ``CocoDataset`` does."""
        if not exists(self.ann_file, backend_args=self.backend_args):
            raise FileNotFoundError(f'annotation file {self.ann_file!r} does not exist')
        return super().load_data_list()

    def COCOAPI(self, ann_file: str) -> COCO:  # noqa: N802
        """Read the annotation file and check it.

        ``CocoDataset.load_data_list`` reads the file through ``self.COCOAPI(path)`` and
        then turns the index into samples; checking here sees the whole file without
        reading a large json twice.
        """
        coco = COCO(ann_file)
        self._check_categories(coco)
        if self.check_images and self.backend_args is None:
            self._check_images(coco)
        return coco

    def _check_categories(self, coco: COCO) -> None:
        names = {cat['id']: cat['name'] for cat in coco.dataset.get('categories', [])}
        classes = tuple(self.metainfo['classes'])
        used = [name for name in names.values() if name in classes]
        if not used:
            shown = ', '.join(repr(c) for c in classes[:SHOWN_CLASSES])
            raise ValueError(
                f'none of the categories {sorted(names.values())} of {self.ann_file!r} is a '
                f'class of the config (metainfo.classes: {len(classes)} classes, {shown}'
                f'{", ..." if len(classes) > SHOWN_CLASSES else ""}), so no annotation would '
                "be loaded; set the dataset's metainfo=dict(classes=(...)) to the file's "
                'category names')
        unused = {cat_id: name for cat_id, name in names.items() if name not in classes}
        if unused and not self.allow_unused_categories:
            raise ValueError(
                f'categories {unused} (id: name) of {self.ann_file!r} are not in the '
                f"config's metainfo.classes {classes}, so their annotations would be "
                'dropped; add them to the classes, or set allow_unused_categories=True '
                'to train on the subset')
        absent = [name for name in classes if name not in names.values()]
        if absent:
            # as CocoDataset (and CocoMetric): label i is the i-th used category of the file
            order = '' if list(classes[:len(used)]) == used else (
                f'; as in CocoDataset, the labels number the file\'s categories in its order '
                f'{used}, not by their places in metainfo.classes')
            warnings.warn(
                f'{len(absent)} classes of the config (metainfo.classes) are not categories '
                f'of {self.ann_file!r}, which has none of their annotations: {absent}{order}',
                stacklevel=2)
        for ann in coco.dataset.get('annotations', []):
            if ann.get('category_id') not in names:
                raise ValueError(
                    f'annotation id {ann.get("id")} (image id {ann.get("image_id")}) of '
                    f'{self.ann_file!r} has category_id {ann.get("category_id")!r}, which is '
                    f'not a category of the file (ids {sorted(names)})')

    def _check_images(self, coco: COCO) -> None:
        images = coco.dataset.get('images', [])
        # The same join as CocoDataset.parse_data_info
        missing = [path for path in (osp.join(self.data_prefix['img'], img['file_name'])
                                     for img in images) if not osp.isfile(path)]
        if missing:
            raise FileNotFoundError(
                f'{len(missing)} of the {len(images)} images listed in {self.ann_file!r} do '
                f'not exist, e.g. {missing[:SHOWN_MISSING]}; check data_root and '
                'data_prefix.img')


register_dataset(CheckedCocoDataset, scopes=('mmdet',))
