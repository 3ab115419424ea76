"""Places365 scene classification (Zhou et al., TPAMI 2017) for MMPretrain.

The dataset of the SE paper's scene-classification experiment (Places365-Challenge,
SE-ResNet-152 vs ResNet-152). It reads the official file lists as downloaded, without
conversion.
"""
from mmengine.fileio import exists, get_local_path, join_path
from mmengine.logging import MMLogger
from mmengine.utils import is_abs
from mmpretrain.datasets import BaseDataset

from seplugin.registry import register_dataset

# The 365 class names in label order: the second field of each line of the official
# categories_places365.txt ("/a/airfield 0") without the leading letter directory. Written
# out from that file (6833 bytes, md5 06c963b85866bd0649f97cb43dd16673); a file rebuilt as
# '\n'.join(f'/{name[0]}/{name} {i}') from this tuple has the same md5. Used as the default
# METAINFO (like mmpretrain's IMAGENET_CATEGORIES) and by the mini-dataset generator; the
# categories file of the data root, when given, is what a dataset instance actually uses.
PLACES365_CATEGORIES = tuple("""
airfield airplane_cabin airport_terminal alcove alley amphitheater amusement_arcade
amusement_park apartment_building/outdoor aquarium aqueduct arcade arch archaelogical_excavation
archive arena/hockey arena/performance arena/rodeo army_base art_gallery art_school art_studio
artists_loft assembly_line athletic_field/outdoor atrium/public attic auditorium auto_factory
auto_showroom badlands bakery/shop balcony/exterior balcony/interior ball_pit ballroom
bamboo_forest bank_vault banquet_hall bar barn barndoor baseball_field basement
basketball_court/indoor bathroom bazaar/indoor bazaar/outdoor beach beach_house beauty_salon
bedchamber bedroom beer_garden beer_hall berth biology_laboratory boardwalk boat_deck boathouse
bookstore booth/indoor botanical_garden bow_window/indoor bowling_alley boxing_ring bridge
building_facade bullring burial_chamber bus_interior bus_station/indoor butchers_shop butte
cabin/outdoor cafeteria campsite campus canal/natural canal/urban candy_store canyon
car_interior carrousel castle catacomb cemetery chalet chemistry_lab childs_room church/indoor
church/outdoor classroom clean_room cliff closet clothing_store coast cockpit coffee_shop
computer_room conference_center conference_room construction_site corn_field corral corridor
cottage courthouse courtyard creek crevasse crosswalk dam delicatessen department_store
desert/sand desert/vegetation desert_road diner/outdoor dining_hall dining_room discotheque
doorway/outdoor dorm_room downtown dressing_room driveway drugstore elevator/door elevator_lobby
elevator_shaft embassy engine_room entrance_hall escalator/indoor excavation fabric_store farm
fastfood_restaurant field/cultivated field/wild field_road fire_escape fire_station fishpond
flea_market/indoor florist_shop/indoor food_court football_field forest/broadleaf forest_path
forest_road formal_garden fountain galley garage/indoor garage/outdoor gas_station
gazebo/exterior general_store/indoor general_store/outdoor gift_shop glacier golf_course
greenhouse/indoor greenhouse/outdoor grotto gymnasium/indoor hangar/indoor hangar/outdoor harbor
hardware_store hayfield heliport highway home_office home_theater hospital hospital_room
hot_spring hotel/outdoor hotel_room house hunting_lodge/outdoor ice_cream_parlor ice_floe
ice_shelf ice_skating_rink/indoor ice_skating_rink/outdoor iceberg igloo industrial_area
inn/outdoor islet jacuzzi/indoor jail_cell japanese_garden jewelry_shop junkyard kasbah
kennel/outdoor kindergarden_classroom kitchen lagoon lake/natural landfill landing_deck
laundromat lawn lecture_room legislative_chamber library/indoor library/outdoor lighthouse
living_room loading_dock lobby lock_chamber locker_room mansion manufactured_home market/indoor
market/outdoor marsh martial_arts_gym mausoleum medina mezzanine moat/water mosque/outdoor motel
mountain mountain_path mountain_snowy movie_theater/indoor museum/indoor museum/outdoor
music_studio natural_history_museum nursery nursing_home oast_house ocean office
office_building office_cubicles oilrig operating_room orchard orchestra_pit pagoda palace
pantry park parking_garage/indoor parking_garage/outdoor parking_lot pasture patio pavilion
pet_shop pharmacy phone_booth physics_laboratory picnic_area pier pizzeria playground playroom
plaza pond porch promenade pub/indoor racecourse raceway raft railroad_track rainforest
reception recreation_room repair_shop residential_neighborhood restaurant restaurant_kitchen
restaurant_patio rice_paddy river rock_arch roof_garden rope_bridge ruin runway sandbox sauna
schoolhouse science_museum server_room shed shoe_shop shopfront shopping_mall/indoor shower
ski_resort ski_slope sky skyscraper slum snowfield soccer_field stable stadium/baseball
stadium/football stadium/soccer stage/indoor stage/outdoor staircase storage_room street
subway_station/platform supermarket sushi_bar swamp swimming_hole swimming_pool/indoor
swimming_pool/outdoor synagogue/outdoor television_room television_studio temple/asia
throne_room ticket_booth topiary_garden tower toyshop train_interior train_station/platform
tree_farm tree_house trench tundra underwater/ocean_deep utility_room valley vegetable_garden
veterinarians_office viaduct village vineyard volcano volleyball_court/outdoor waiting_room
water_park water_tower waterfall watering_hole wave wet_bar wheat_field wind_farm windmill yard
youth_hostel zen_garden
""".split())

# How many missing images the eager check lists by file and line.
SHOWN_MISSING = 10


class Places365(BaseDataset):
    """`Places365 <http://places2.csail.mit.edu>`_ scene classification, 365 classes.

    Reads the official file lists and image folders as they come out of the download
    archives (file lists from ``filelist_places365-standard.tar`` and
    ``filelist_places365-challenge.tar``)::

        data/places365
        ├── categories_places365.txt       # "/a/airfield 0" per line, 365 lines
        ├── places365_train_standard.txt   # "/a/airfield/00000001.jpg 0" (1.8M lines)
        ├── places365_train_challenge.txt  # same format (8.0M lines)
        ├── places365_val.txt              # "Places365_val_00000001.jpg 165" (36,500)
        ├── places365_test.txt             # "Places365_test_00000001.jpg", no label
        ├── data_256/  or  data_large/     # training images: a/airfield/00000001.jpg
        ├── val_256/   or  val_large/      # Places365_val_00000001.jpg
        └── test_256/  or  test_large/     # Places365_test_00000001.jpg

    Standard and Challenge training images share one folder (``data_256/`` or
    ``data_large/``), as the official archives extract. Class names come from the categories
    file: the path without its leading letter directory ('airfield',
    'apartment_building/outdoor'). The test split has no labels: its samples carry no
    ``gt_label``, for inference only.

    Errors name the file and the line: a list line with a wrong number of fields, a label
    that is not an integer or not in 0..364, a malformed categories file, and a missing
    image. Missing images are found lazily by default, when a sample is fetched; an eager
    check of every image at load time is an option (``check_images``), off by default
    because it costs one file-system lookup per image, at every start of a training: about
    3 microseconds each with a warm metadata cache on a local disk (6 s for Standard's 1.8M
    images, 25 s for Challenge's 8.0M), but one disk or network round trip each on a cold
    cache or a network file system (minutes to hours). The lazy check is one lookup per
    fetched image, next to nothing beside decoding it.

    Args:
        data_root (str): Folder of the file lists and image folders. Defaults to ''.
        split (str): 'train-standard', 'train-challenge', 'val' or 'test'.
            Defaults to 'train-standard'.
        resolution (str | int): '256' for the 256x256 images (``*_256/``) or 'large' for
            the high-resolution ones (``*_large/``). Defaults to '256'.
        ann_file (str): The image list, relative to ``data_root`` unless absolute.
            Defaults to '', the official list of ``split``.
        data_prefix (str | dict): The image folder, relative to ``data_root`` unless
            absolute. Defaults to '', the official folder of ``split`` and ``resolution``.
        categories_file (str, optional): The categories list, relative to ``data_root``
            unless absolute. None uses the built-in official names
            (``PLACES365_CATEGORIES``). Defaults to 'categories_places365.txt'.
        check_images (bool): Check at load time that every image exists, and fail listing
            the missing ones. Defaults to False (each image is checked when fetched).
        **kwargs: Other arguments of ``mmpretrain.datasets.BaseDataset``: ``pipeline``,
            ``test_mode``, ``lazy_init``, ``indices``, ``serialize_data``, ...

    Examples:
        >>> train = Places365('data/places365', split='train-challenge')
        >>> val = Places365('data/places365', split='val', resolution='large',
        ...                 test_mode=True)
    """

    METAINFO = {'classes': PLACES365_CATEGORIES}
    NUM_CLASSES = 365
    # split: (official list file, image folder without the resolution suffix)
    SPLITS = {
        'train-standard': ('places365_train_standard.txt', 'data'),
        'train-challenge': ('places365_train_challenge.txt', 'data'),
        'val': ('places365_val.txt', 'val'),
        'test': ('places365_test.txt', 'test'),
    }
    RESOLUTIONS = ('256', 'large')

    def __init__(self,
                 data_root: str = '',
                 split: str = 'train-standard',
                 resolution: str | int = '256',
                 ann_file: str = '',
                 data_prefix: str | dict = '',
                 categories_file: str | None = 'categories_places365.txt',
                 check_images: bool = False,
                 **kwargs) -> None:
        if split not in self.SPLITS:
            raise ValueError(f'unknown Places365 split {split!r}; expected one of '
                             f'{list(self.SPLITS)}')
        resolution = str(resolution)
        if resolution not in self.RESOLUTIONS:
            raise ValueError(f'unknown Places365 resolution {resolution!r}; expected one of '
                             f'{list(self.RESOLUTIONS)}')
        list_name, folder = self.SPLITS[split]
        # Set before super().__init__, which loads the lists unless lazy_init.
        self.split = split
        self.resolution = resolution
        self.with_label = split != 'test'
        self.check_images = check_images
        if categories_file and data_root and not is_abs(categories_file):
            categories_file = join_path(data_root, categories_file)
        self.categories_file = categories_file
        super().__init__(
            ann_file=ann_file or list_name,
            data_root=data_root,
            data_prefix=data_prefix or f'{folder}_{resolution}',
            **kwargs)

    def load_data_list(self) -> list[dict]:
        """Read the categories file and the image list of the split.

        Returns:
            list[dict]: One dict per image: ``img_path``, ``gt_label`` (not for the test
            split) and ``list_line``, the line of the image in the list (for error
            messages).
        """
        if self.categories_file:
            self._metainfo['classes'] = self._read_categories(self.categories_file)
        data_list = []
        for lineno, fields in self._read_lines(self.ann_file, 'image list'):
            expected = 2 if self.with_label else 1
            if len(fields) != expected:
                form = '"<image> <label>"' if self.with_label else '"<image>" (no label)'
                plural = 's' if len(fields) > 1 else ''
                raise ValueError(f'{self.ann_file}, line {lineno}: expected {form} for the '
                                 f'{self.split} split, got {len(fields)} field{plural}: '
                                 f'{" ".join(fields)!r}')
            # Training lists start their paths with '/' ("/a/airfield/00000001.jpg"); they
            # are relative to the image folder all the same.
            info = dict(img_path=join_path(self.img_prefix, fields[0].lstrip('/')),
                        list_line=lineno)
            if self.with_label:
                info['gt_label'] = self._parse_index(fields[1], self.ann_file, lineno,
                                                     'label')
            data_list.append(info)
        if not data_list:
            raise ValueError(f'{self.ann_file} lists no images')
        if self.check_images:
            self._check_all_images(data_list)
        return data_list

    def prepare_data(self, idx: int) -> dict | None:
        """The pipeline's output for sample ``idx``, after checking that its image exists.

        The check runs before the pipeline, so that a missing image is reported with its
        list file and line whatever the pipeline does with it.
        """
        data_info = self.get_data_info(idx)
        if not exists(data_info['img_path']):
            raise FileNotFoundError(self._missing_message(data_info))
        return self.pipeline(data_info)

    def get_cat_ids(self, idx: int) -> list[int]:
        """The label of sample ``idx`` as a one-item list (used by class-aware samplers)."""
        if not self.with_label:
            raise ValueError(f'the {self.split} split of Places365 has no labels')
        return super().get_cat_ids(idx)

    def extra_repr(self) -> list[str]:
        """Split, resolution and files, for ``repr(dataset)``."""
        return [f'Split: \t{self.split}',
                f'Resolution: \t{self.resolution}',
                f'Annotation file: \t{self.ann_file}',
                f'Categories file: \t{self.categories_file}',
                f'Prefix of images: \t{self.img_prefix}']

    def _read_categories(self, path: str) -> tuple[str, ...]:
        """The 365 class names of a categories file, in label order."""
        names: dict[int, str] = {}
        for lineno, fields in self._read_lines(path, 'categories file'):
            # "/a/airfield 0" -> '', 'a', 'airfield'
            parts = fields[0].split('/', 2) if len(fields) == 2 else []
            if len(parts) != 3 or parts[0] or not parts[1] or not parts[2]:
                raise ValueError(f'{path}, line {lineno}: expected "/<letter>/<name> '
                                 f'<index>" such as "/a/airfield 0", got {" ".join(fields)!r}')
            index = self._parse_index(fields[1], path, lineno, 'category index')
            if index in names:
                raise ValueError(f'{path}, line {lineno}: category index {index} is also '
                                 f'that of {names[index]!r}')
            names[index] = parts[2]
        missing = sorted(set(range(self.NUM_CLASSES)) - set(names))
        if missing:
            raise ValueError(f'{path} has {len(names)} categories, not {self.NUM_CLASSES}: '
                             f'no line for index {missing[:SHOWN_MISSING]}'
                             f'{" ..." if len(missing) > SHOWN_MISSING else ""}')
        return tuple(names[i] for i in range(self.NUM_CLASSES))

    def _parse_index(self, text: str, path: str, lineno: int, what: str) -> int:
        """``text`` as a class index in 0..364, else an error naming file and line."""
        try:
            index = int(text)
        except ValueError:
            raise ValueError(f'{path}, line {lineno}: {what} {text!r} is not an '
                             'integer') from None
        if not 0 <= index < self.NUM_CLASSES:
            raise ValueError(f'{path}, line {lineno}: {what} {index} is outside '
                             f'0..{self.NUM_CLASSES - 1}')
        return index

    @staticmethod
    def _read_lines(path: str, what: str):
        """Yield (line number, whitespace-split fields) of each non-blank line of a file.

        Reads line by line rather than whole, since the Challenge list has 8M lines.
        """
        if not exists(path):
            raise FileNotFoundError(f'Places365 {what} {path!r} does not exist')
        with get_local_path(path) as local_path, open(local_path, encoding='utf-8') as f:
            for lineno, line in enumerate(f, start=1):
                fields = line.split()
                if fields:
                    yield lineno, fields

    def _check_all_images(self, data_list: list[dict]) -> None:
        """Fail listing (file, line) of the missing images, if any is missing."""
        missing = [info for info in data_list if not exists(info['img_path'])]
        if missing:
            shown = '\n'.join(self._missing_message(info) for info in missing[:SHOWN_MISSING])
            more = (f'\n... and {len(missing) - SHOWN_MISSING} more'
                    if len(missing) > SHOWN_MISSING else '')
            raise FileNotFoundError(f'{len(missing)} of the {len(data_list)} images of '
                                    f'{self.ann_file} do not exist:\n{shown}{more}')
        MMLogger.get_current_instance().info(
            f'Places365 {self.split}: all {len(data_list)} images exist')

    def _missing_message(self, data_info: dict) -> str:
        return (f'{self.ann_file}, line {data_info["list_line"]}: image '
                f'{data_info["img_path"]} does not exist (image folder '
                f'{self.img_prefix}, resolution {self.resolution!r})')


def places365_categories_text() -> str:
    """The official categories_places365.txt (no final newline), from the built-in names."""
    return '\n'.join(f'/{name[0]}/{name} {i}' for i, name in enumerate(PLACES365_CATEGORIES))


__all__ = ['PLACES365_CATEGORIES', 'Places365', 'places365_categories_text']


register_dataset(Places365, scopes=('mmpretrain',))
