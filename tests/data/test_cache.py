"""The training cache: the same pixels as decoding, rebuilt for a changed size or file, resumable."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskingnet.data.cache import SampleCache
from maskingnet.data.carvana import SegmentationDataset, scan

SIZE = (48, 32)


@pytest.fixture
def carvana(synth_dir, tmp_path) -> Path:
    """A private copy of the synthetic Carvana set (96x64 photos) that a test may change."""
    return Path(shutil.copytree(synth_dir, tmp_path / "carvana", ignore=shutil.ignore_patterns("test")))


@pytest.fixture
def records(carvana) -> list:
    return scan(carvana).records[:6]


class CountingDecoder:
    """``SegmentationDataset.decode_pixels`` that counts its calls and can stop after ``stop_after``."""

    def __init__(self, size: tuple[int, int], stop_after: int | None = None) -> None:
        self.dataset = SegmentationDataset([], size=size)
        self.calls: list[str] = []
        self.stop_after = stop_after

    def __call__(self, record):
        if self.stop_after is not None and len(self.calls) >= self.stop_after:
            raise KeyboardInterrupt
        self.calls.append(record.id)
        return self.dataset.decode_pixels(record)


def build(cache: SampleCache, records: list, **options) -> CountingDecoder:
    decoder = CountingDecoder(cache.size, **options)
    assert cache.build(records, decoder, workers=1, progress=False) == []
    return decoder


@pytest.mark.parametrize("augment", [False, True])
def test_cached_items_equal_decoded_items(records, tmp_path, augment):
    cache = SampleCache(tmp_path / "cache", SIZE)
    build(cache, records)
    options = {"size": SIZE, "augment": augment, "crop": (40, 24), "seed": 3}
    decoded = SegmentationDataset(records, **options)
    cached = SegmentationDataset(records, cache=cache, **options)
    for index in range(len(records)):
        a, b = decoded[index], cached[index]
        for key in ("image", "coords", "mask"):
            assert np.array_equal(a[key].numpy(), b[key].numpy()), (index, key)


def test_second_build_decodes_nothing(records, tmp_path):
    cache = SampleCache(tmp_path / "cache", SIZE)
    build(cache, records)
    assert build(cache, records).calls == []


def test_changed_photo_is_decoded_again_and_its_old_entry_removed(records, tmp_path):
    cache = SampleCache(tmp_path / "cache", SIZE)
    build(cache, records)
    changed = records[2]
    old_entry = cache.path(changed)
    Image.new("RGB", Image.open(changed.image_path).size, (200, 10, 10)).save(changed.image_path)
    stat = changed.image_path.stat()
    os.utime(changed.image_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert build(cache, records).calls == [changed.id]
    assert not old_entry.exists() and cache.path(changed).exists()
    image, _ = cache.load(changed)
    assert image[..., 0].mean() > 150


def test_changed_mask_is_decoded_again(records, tmp_path):
    cache = SampleCache(tmp_path / "cache", SIZE)
    build(cache, records)
    changed = records[0]
    Image.new("P", Image.open(changed.mask_path).size, 0).save(changed.mask_path)
    assert build(cache, records).calls == [changed.id]
    assert not cache.load(changed)[1].any()


def test_another_size_is_another_set_of_entries(records, tmp_path):
    small, large = SampleCache(tmp_path / "cache", SIZE), SampleCache(tmp_path / "cache", (64, 40))
    build(small, records)
    assert build(large, records).calls == [r.id for r in records]
    assert large.load(records[0])[0].shape == (40, 64, 3)
    assert small.missing(records) == []


def test_interrupted_build_resumes_where_it_stopped(records, tmp_path):
    cache = SampleCache(tmp_path / "cache", SIZE)
    with pytest.raises(KeyboardInterrupt):
        cache.build(records, CountingDecoder(SIZE, stop_after=3), workers=1, progress=False)
    assert len(cache.missing(records)) == 3
    assert sorted(build(cache, records).calls) == sorted(r.id for r in records[3:])
    assert not [p for p in cache.folder.iterdir() if not p.name.endswith(".npy")]  # no temp files left


def test_undecodable_photo_is_one_line_and_the_rest_is_cached(records, tmp_path):
    records[1].image_path.write_bytes(b"\xff\xd8 not a jpeg")
    cache = SampleCache(tmp_path / "cache", SIZE)
    problems = cache.build(records, SegmentationDataset([], size=SIZE).decode_pixels, progress=False)
    assert len(problems) == 1 and str(records[1].image_path) in problems[0] and "\n" not in problems[0]
    assert cache.missing(records) == [records[1]]


def test_dataset_refuses_a_cache_of_another_size(records, tmp_path):
    with pytest.raises(ValueError, match="cache"):
        SegmentationDataset(records, size=(64, 40), cache=SampleCache(tmp_path, SIZE))
