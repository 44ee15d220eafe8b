"""Photos and masks decoded once at the training size, kept on disk and read back every epoch.

Decoding a 1918x1280 JPEG and its GIF mask and resizing both costs more than reading the result back, and
the whole Carvana set does not fit in memory as full-size pixels (31 GB). The cache keeps one ``.npy``
file per photo under ``FOLDER/<W>x<H>/``: an (H, W, 4) uint8 array, RGB plus the mask (0/1) as a fourth
plane, exactly what :class:`~maskingnet.data.carvana.SegmentationDataset` makes from the files. Loaders read
one file per item, so memory holds only the photos in flight (the OS page cache does the rest).

Each file is named ``<id>-<key>.npy``; the key hashes the size and the name, byte size and modification
time of the photo and of its mask (or its RLE row), so a changed size or file gets a new entry and the old
one of that photo is removed. Entries are written atomically, so an interrupted build resumes where it
stopped.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from maskingnet.data.io import BadInputError
from maskingnet.utils import atomic_write
from maskingnet.utils.progress import progress_bar

# Bump when the pixels an entry holds would change for the same files (decoding, resizing).
CACHE_VERSION = 1


def _file_identity(path: Path | None) -> str:
    if path is None:
        return "-"
    stat = path.stat()
    return f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}"


class SampleCache:
    """The cached photos and masks of one training ``size`` = (W, H) under ``folder``."""

    def __init__(self, folder: str | os.PathLike, size: tuple[int, int]) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.folder = Path(folder) / f"{self.size[0]}x{self.size[1]}"

    def key(self, record) -> str:
        """16 hex digits that change with the size, the cache version, or the record's files."""
        rle = hashlib.sha1(record.rle.encode()).hexdigest() if record.rle is not None else "-"
        files = (_file_identity(record.image_path), _file_identity(record.mask_path), rle)
        parts = (CACHE_VERSION, self.size, *files)
        return hashlib.sha1(repr(parts).encode()).hexdigest()[:16]

    def path(self, record) -> Path:
        return self.folder / f"{record.id}-{self.key(record)}.npy"

    def load(self, record) -> tuple[np.ndarray, np.ndarray]:
        """(image (H, W, 3) uint8, mask (H, W) bool) of a record that :meth:`build` has cached."""
        planes = np.load(self.path(record), allow_pickle=False)
        return planes[..., :3], planes[..., 3] != 0

    def missing(self, records: Iterable) -> list:
        """The records without a current entry."""
        return [record for record in records if not self.path(record).is_file()]

    def build(
        self,
        records: Sequence,
        decode: Callable[[object], tuple[np.ndarray, np.ndarray]],
        *,
        workers: int = 2,
        progress: bool = True,
    ) -> list[str]:
        """Cache every record that has no current entry, ``decode(record)`` giving its (image, mask) at the
        size; returns one ``"path: what is wrong"`` line per record that could not be decoded (not cached).

        Decoding runs in ``workers`` threads (PIL and OpenCV release the GIL while decoding)."""
        todo = self.missing(records)
        if not todo:
            return []
        self.folder.mkdir(parents=True, exist_ok=True)
        stale = self._entries_by_id()
        problems: list[str] = []
        bar = progress_bar(
            len(todo), desc=f"caching photos at {self.size[0]}x{self.size[1]}", unit="photo", enabled=progress
        )
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for problem in pool.map(lambda r: self._put(r, decode, stale.get(r.id, [])), todo):
                if problem:
                    problems.append(problem)
                bar.update(1)
        bar.close()
        return problems

    def _put(self, record, decode, old_entries: list[Path]) -> str | None:
        try:
            image, mask = decode(record)
        except BadInputError as error:
            return str(error)
        planes = np.concatenate([np.asarray(image, dtype=np.uint8), mask[..., None].astype(np.uint8)], axis=2)
        expected = (self.size[1], self.size[0], 4)
        if planes.shape != expected:
            return f"{record.image_path}: decoded to {planes.shape}, expected {expected}"
        with atomic_write(self.path(record)) as handle:
            np.save(handle, planes, allow_pickle=False)
        for old in old_entries:
            if old != self.path(record):
                old.unlink(missing_ok=True)
        return None

    def _entries_by_id(self) -> dict[str, list[Path]]:
        entries: dict[str, list[Path]] = {}
        for path in self.folder.glob("*.npy"):
            entries.setdefault(path.stem.rsplit("-", 1)[0], []).append(path)
        return entries
