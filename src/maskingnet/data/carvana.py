"""The Carvana layout (and a plain images/ + masks/ layout), splits by car, and the training dataset.

Carvana layout (as Kaggle ships it)::

    ROOT/train/<car>_<nn>.jpg              <car> is 12 hex digits, <nn> the angle 01..16
    ROOT/train_masks/<car>_<nn>_mask.gif   palette 0/1; when absent, ROOT/train_masks.csv (img,rle_mask)
    ROOT/metadata.csv                      optional: id,year,make,model,trim1,trim2

Plain layout, for a shop's own photos::

    ROOT/images/<stem>.<jpg|png|...>       ROOT/masks/<stem>.<png|gif|jpg> (or <stem>_mask.*)

``scan`` reads headers only (no pixels), so it is quick on the full 5,088-image set. Every file or row it
cannot use is reported as one ``"path: what is wrong"`` line in ``ScanResult.problems`` and skipped; the
rest still load. Splits never put one car in both sets (``thesis_split`` documents its one exception).
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from maskingnet.data.cache import SampleCache
from maskingnet.data.coords import resized_coord_maps
from maskingnet.data.io import BadInputError, image_size, read_image, read_mask
from maskingnet.data.rle import rle_decode, rle_runs
from maskingnet.data.transforms import (
    AugmentConfig,
    Sample,
    center_crop,
    random_crop,
    resize,
    sample_rng,
    to_tensor,
)
from maskingnet.data.transforms import augment as augment_sample

CARVANA_NAME = re.compile(r"(?P<car>[0-9a-f]{12})_(?P<angle>\d{2})")
THESIS_TRAIN_IMAGES = 4071
THESIS_VAL_IMAGES = 1017
MASK_SUFFIX = "_mask"


@dataclass(frozen=True)
class Record:
    """One labelled photo. ``size`` is the upright (width, height) read from the header at scan time.

    The mask comes from ``mask_path`` when set, else from ``rle`` (Kaggle RLE over ``size``)."""

    id: str
    car_id: str
    angle: int | None
    image_path: Path
    mask_path: Path | None = None
    rle: str | None = None
    size: tuple[int, int] | None = None


@dataclass
class ScanResult:
    """What ``scan`` found: usable records (sorted by id), one line per skipped file or row, and extras.

    Unpacks as ``records, problems = scan(root)``."""

    records: list[Record]
    problems: list[str]
    layout: str = ""
    root: Path | None = None
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)

    def __iter__(self) -> Iterator:
        return iter((self.records, self.problems))

    @property
    def cars(self) -> list[str]:
        return sorted({record.car_id for record in self.records})

    def summary(self) -> str:
        """One line: layout, images, cars, where masks come from, and how many files were skipped."""
        sources = sorted({"GIF/PNG masks" if r.mask_path else "RLE rows" for r in self.records})
        return (
            f"{self.root}: {self.layout} layout, {len(self.records)} images of {len(self.cars)} cars"
            f" ({', '.join(sources) or 'no masks'}), {len(self.problems)} skipped"
        )


def parse_name(stem: str) -> tuple[str, int | None]:
    """(car id, angle) from ``<12hex>_<nn>``; any other name is its own car with no angle."""
    match = CARVANA_NAME.fullmatch(stem)
    if match is None:
        return stem, None
    return match["car"], int(match["angle"])


def scan(root: str | os.PathLike, *, verify: bool = False) -> ScanResult:
    """Find the labelled photos under ``root`` (Carvana or plain layout, detected from the folders).

    ``root`` may also be a Carvana ``train/`` folder. With ``verify=True`` every image and mask is fully
    decoded too (slow, but it also catches truncated files, which headers cannot show). Raises
    ``BadInputError`` only when ``root`` itself is not a data folder.
    """
    root = _data_root(Path(root))
    if (root / "train").is_dir():
        return _scan_carvana(root, verify)
    return _scan_plain(root, verify)


def load_mask(record: Record) -> np.ndarray:
    """The record's mask at the photo's original size, as an (H, W) bool array."""
    if record.mask_path is not None:
        return read_mask(record.mask_path)
    if record.rle is not None:
        width, height = record.size or image_size(record.image_path)
        return rle_decode(record.rle, (height, width))
    raise ValueError(f"{record.image_path}: record has no mask (neither mask_path nor rle)")


def split_by_car(
    records: Sequence[Record], val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Record], list[Record]]:
    """(train, val) with ``round(cars * val_fraction)`` randomly chosen cars in val (at least one car on
    each side when the fraction is between 0 and 1 and there are two cars or more)."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    cars = _shuffled_cars(records, seed)
    count = round(len(cars) * val_fraction)
    if val_fraction > 0 and len(cars) >= 2:
        count = min(max(count, 1), len(cars) - 1)
    return _partition(records, set(cars[:count]))


def thesis_split(records: Sequence[Record], seed: int = 0) -> tuple[list[Record], list[Record]]:
    """The thesis's 4,071 / 1,017 split, in proportion on other sets (``round(n * 1017 / 5088)`` in val).

    Whole cars, chosen at random, fill val while they fit. 1,017 is not a multiple of 16 angles, so when
    the whole cars leave a remainder, the next car's first angles complete val and its other angles stay
    in train: exactly one car straddles the split (on the full set: 63 cars + 9 images of a 64th). Use
    ``split_by_car`` where no car may be on both sides.
    """
    target = round(len(records) * THESIS_VAL_IMAGES / (THESIS_TRAIN_IMAGES + THESIS_VAL_IMAGES))
    groups = _group_by_car(records)
    val_ids: set[int] = set()
    for car in _shuffled_cars(records, seed):
        indices = groups[car]
        room = target - len(val_ids)
        if room <= 0:
            break
        if len(indices) <= room:
            val_ids.update(indices)
        else:
            by_angle = sorted(indices, key=lambda i: (records[i].angle or 0, records[i].id))
            val_ids.update(by_angle[:room])
            break
    train = [record for i, record in enumerate(records) if i not in val_ids]
    val = [record for i, record in enumerate(records) if i in val_ids]
    return train, val


def kfold_by_car(
    records: Sequence[Record], k: int, fold: int, seed: int = 0
) -> tuple[list[Record], list[Record]]:
    """(train, val) for ``fold`` of ``k``: cars are shuffled once per seed and dealt round-robin to folds."""
    cars = _shuffled_cars(records, seed)
    if not 2 <= k <= len(cars):
        raise ValueError(f"k must be between 2 and the number of cars ({len(cars)}), got {k}")
    if not 0 <= fold < k:
        raise ValueError(f"fold must be in 0..{k - 1}, got {fold}")
    return _partition(records, set(cars[fold::k]))


class SegmentationDataset(torch.utils.data.Dataset):
    """Items ``{"image": (3,H,W) float32, "coords": (2,H,W) float32, "mask": (H,W) int64, "id", "index"}``.

    ``size`` = (W, H) resizes every photo (JPEGs are decoded at reduced scale when that allows; the
    coordinate maps are those of the original photo either way); None keeps the original size. With
    ``augment``, h-flip, shift/scale/rotate and colour jitter are drawn from ``sample_rng(seed, epoch,
    index)``: the same in any DataLoader worker; call ``set_epoch`` to vary them between epochs. ``crop``
    = (w, h) then cuts a window after resizing: at a random place when ``random_crop`` (default: with
    ``augment``), in the middle otherwise; image, coordinate maps and mask are cut at the same place.
    With a :class:`~maskingnet.data.cache.SampleCache` of ``size``, photos and masks are read from it
    (the same pixels; :meth:`SampleCache.build` must have cached the records first).
    """

    def __init__(
        self,
        records: Sequence[Record],
        size: tuple[int, int] | None = None,
        augment: bool = False,
        seed: int = 0,
        *,
        crop: tuple[int, int] | None = None,
        random_crop: bool | None = None,
        augment_config: AugmentConfig = AugmentConfig(),
        epoch: int = 0,
        cache: SampleCache | None = None,
    ) -> None:
        if cache is not None and (size is None or tuple(size) != cache.size):
            raise ValueError(f"the cache holds photos at {cache.size}, the dataset's size is {size}")
        self.records = list(records)
        self.cache = cache
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.augment = augment
        self.seed = seed
        self.crop = None if crop is None else (int(crop[0]), int(crop[1]))
        self.random_crop = augment if random_crop is None else random_crop
        self.augment_config = augment_config
        self.epoch = epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        sample = self.load_sample(record)
        rng = sample_rng(self.seed, self.epoch, index)
        if self.augment:
            sample = augment_sample(sample, rng, self.augment_config)
        if self.crop is not None and self.random_crop:
            sample = random_crop(sample, self.crop, rng)
        elif self.crop is not None:
            sample = center_crop(sample, self.crop)
        return {
            "image": to_tensor(sample.image),
            "coords": torch.from_numpy(sample.coords),
            "mask": torch.from_numpy(sample.mask.astype(np.int64)),
            "id": record.id,
            "index": index,
        }

    def load_sample(self, record: Record) -> Sample:
        """Photo, coordinate maps of the original photo and mask, resized to ``size`` when it is set (read
        from the cache when there is one)."""
        if self.cache is None:
            return self.decode(record)
        image, mask = self.cache.load(record)
        original = record.size or image_size(record.image_path)
        return Sample(Image.fromarray(image), resized_coord_maps(self.cache.size, original), mask)

    def decode_pixels(self, record: Record) -> tuple[np.ndarray, np.ndarray]:
        """(image (H, W, 3) uint8, mask (H, W) bool) as decoded from the files: what the cache keeps."""
        sample = self.decode(record)
        return np.asarray(sample.image), sample.mask

    def decode(self, record: Record) -> Sample:
        """:meth:`load_sample` from the files themselves."""
        image = read_image(record.image_path, target_size=self.size)
        original = record.size or image_size(record.image_path)
        coords = resized_coord_maps(self.size or image.size, original)  # the same as resizing them later
        sample = Sample(image, coords, load_mask(record))
        if self.size is not None:
            return resize(sample, self.size)
        if sample.mask.shape != (image.size[1], image.size[0]):
            height, width = sample.mask.shape
            where = record.mask_path or record.image_path
            raise BadInputError(where, f"mask is {width}x{height}, image is {image.size[0]}x{image.size[1]}")
        return sample


def _data_root(root: Path) -> Path:
    if not root.is_dir():
        raise BadInputError(root, "no such folder")
    if (root / "train").is_dir() or ((root / "images").is_dir() and (root / "masks").is_dir()):
        return root
    parent = root.parent
    if root.name == "train" and ((parent / "train_masks").is_dir() or (parent / "train_masks.csv").is_file()):
        return parent
    raise BadInputError(
        root, "not a data folder: expected train/ (+ train_masks/ or train_masks.csv) or images/ + masks/"
    )


def _scan_carvana(root: Path, verify: bool) -> ScanResult:
    problems: list[str] = []
    images = _files_by_id(root / "train", problems)
    masks = _files_by_id(root / "train_masks", problems, strip=MASK_SUFFIX)
    csv_path = root / "train_masks.csv"
    needs_csv = any(image_id not in masks for image_id in images)
    rles = _read_rle_csv(csv_path, images, problems) if needs_csv and csv_path.is_file() else {}
    records = _pair(images, masks, rles, csv_path, problems, verify, root / "train_masks")
    metadata = _read_metadata(root / "metadata.csv", problems)
    return ScanResult(records, problems, "carvana", root, metadata)


def _scan_plain(root: Path, verify: bool) -> ScanResult:
    problems: list[str] = []
    images = _files_by_id(root / "images", problems)
    masks = _files_by_id(root / "masks", problems, strip=MASK_SUFFIX)
    records = _pair(images, masks, {}, None, problems, verify, root / "masks")
    return ScanResult(records, problems, "plain", root)


def _files_by_id(folder: Path, problems: list[str], strip: str = "") -> dict[str, Path | None]:
    """Visible files of ``folder`` by id (stem, minus ``strip`` at its end); two files for one id are both
    reported and the id maps to None (known, but not usable)."""
    if not folder.is_dir():
        return {}
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        stem = path.stem[: -len(strip)] if strip and path.stem.endswith(strip) else path.stem
        found.setdefault(stem, []).append(path)
    unique: dict[str, Path | None] = {}
    for stem, paths in found.items():
        unique[stem] = paths[0] if len(paths) == 1 else None
        if len(paths) == 1:
            continue
        names = ", ".join(path.name for path in paths)
        problems.extend(f"{path}: ambiguous, one id has several files ({names})" for path in paths)
    return unique


def _read_rle_csv(path: Path, images: dict[str, Path | None], problems: list[str]) -> dict[str, str]:
    rles: dict[str, str] = {}
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None or [cell.strip() for cell in header[:2]] != ["img", "rle_mask"]:
                problems.append(f"{path}: header is {header!r}, expected img,rle_mask; file not used")
                return {}
            for line, row in enumerate(reader, start=2):
                _take_rle_row(path, line, row, images, rles, problems)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        problems.append(f"{path}: cannot read ({error})")
    return rles


def _take_rle_row(
    path: Path,
    line: int,
    row: list[str],
    images: dict[str, Path | None],
    rles: dict[str, str],
    problems: list[str],
) -> None:
    if len(row) != 2:
        problems.append(f"{path}:{line}: expected 2 columns (img,rle_mask), got {len(row)}")
        return
    image_id = Path(row[0].strip()).stem
    if image_id not in images:
        problems.append(f"{path}:{line}: {row[0]}: row without image")
    elif image_id in rles:
        problems.append(f"{path}:{line}: {row[0]}: second row for one image; first kept")
    else:
        rles[image_id] = row[1].strip()


def _pair(
    images: dict[str, Path | None],
    masks: dict[str, Path | None],
    rles: dict[str, str],
    csv_path: Path | None,
    problems: list[str],
    verify: bool,
    mask_folder: Path,
) -> list[Record]:
    """Records for the images that have exactly one usable mask; a problem line for each other file.

    Ids that map to None were already reported as ambiguous and are passed over here."""
    records: list[Record] = []
    for image_id, image_path in images.items():
        if image_path is None or (image_id in masks and masks[image_id] is None):
            continue
        record = _record(image_id, image_path, masks.get(image_id), rles.get(image_id), csv_path, verify)
        if isinstance(record, str):
            problems.append(record)
        elif record is None:
            problems.append(f"{image_path}: {_no_mask(image_id, mask_folder, csv_path)}")
        else:
            records.append(record)
    orphans = [path for image_id, path in masks.items() if path is not None and image_id not in images]
    problems.extend(f"{path}: mask without image" for path in orphans)
    return records


def _no_mask(image_id: str, mask_folder: Path, csv_path: Path | None) -> str:
    if csv_path is None:
        return f"no mask (no {mask_folder.name}/{image_id}.* or {image_id}{MASK_SUFFIX}.*)"
    return f"no mask (no {mask_folder.name}/{image_id}{MASK_SUFFIX}.gif and no {csv_path.name} row)"


def _record(
    image_id: str,
    image_path: Path,
    mask_path: Path | None,
    rle: str | None,
    csv_path: Path | None,
    verify: bool,
) -> Record | str | None:
    """The record, or one problem line, or None when there is no mask at all."""
    try:
        size = image_size(image_path)
        if verify:
            read_image(image_path)
    except BadInputError as error:
        return str(error)
    if mask_path is not None:
        problem = _mask_problem(mask_path, size, verify)
        rle = None
    elif rle is not None:
        problem = _rle_problem(rle, size, f"{csv_path}: {image_id}")
    else:
        return None
    if problem:
        return problem
    car_id, angle = parse_name(image_id)
    return Record(image_id, car_id, angle, image_path, mask_path, rle, size)


def _mask_problem(mask_path: Path, size: tuple[int, int], verify: bool) -> str | None:
    try:
        mask_size = image_size(mask_path)
        if verify:
            read_mask(mask_path)
    except BadInputError as error:
        return str(error)
    if mask_size != size:
        return f"{mask_path}: mask is {mask_size[0]}x{mask_size[1]}, image is {size[0]}x{size[1]}"
    return None


def _rle_problem(rle: str, size: tuple[int, int], where: str) -> str | None:
    try:
        rle_runs(rle, (size[1], size[0]))
    except ValueError as error:
        return f"{where}: {error}"
    return None


def _read_metadata(path: Path, problems: list[str]) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        problems.append(f"{path}: cannot read ({error})")
        return {}
    if rows and "id" not in rows[0]:
        problems.append(f"{path}: no id column; file not used")
        return {}
    return {row["id"]: row for row in rows if row.get("id")}


def _group_by_car(records: Sequence[Record]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        groups.setdefault(record.car_id, []).append(index)
    return groups


def _shuffled_cars(records: Sequence[Record], seed: int) -> list[str]:
    cars = sorted({record.car_id for record in records})
    order = np.random.default_rng(seed).permutation(len(cars))
    return [cars[i] for i in order]


def _partition(records: Sequence[Record], val_cars: set[str]) -> tuple[list[Record], list[Record]]:
    train = [record for record in records if record.car_id not in val_cars]
    val = [record for record in records if record.car_id in val_cars]
    return train, val
