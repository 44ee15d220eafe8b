"""Hostile test folders for ``maskingnet submit``: names that need CSV quoting, and files that are not
images, each still get their row."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import make_half_car_checkpoint

from maskingnet.data.rle import rle_decode
from maskingnet.inference import ModelSettings
from maskingnet.predict import Predictor
from maskingnet.submit import SubmitConfig, submit

AWKWARD_NAMES = ("a,b.jpg", 'say "cheese".jpg', "two\nlines.jpg")
NOT_IMAGES = {"empty.jpg": b"", "notes.txt": b"not a photo\n", "noise.bin": bytes(range(256)) * 4}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_half_car_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture(scope="module")
def test_dir(tmp_path_factory, synth_dir) -> Path:
    """Two ordinary photos, the same photo under awkward names, and files that are not images."""
    folder = tmp_path_factory.mktemp("hostile") / "test"
    folder.mkdir()
    photos = sorted((synth_dir / "test").iterdir())[:2]
    for photo in photos:
        shutil.copy(photo, folder / photo.name)
    for name in AWKWARD_NAMES:
        shutil.copy(photos[0], folder / name)
    for name, data in NOT_IMAGES.items():
        (folder / name).write_bytes(data)
    return folder


Rows = list[list[str]]


def run_submit(checkpoint: Path, folder: Path, out: Path, **options: Any) -> tuple[Rows, list[str], Any]:
    """(the CSV's rows, the lines reported, the summary) of one submit run."""
    lines: list[str] = []
    config = SubmitConfig(
        ModelSettings(checkpoint, precision="fp32"), folder, out, workers=0, progress=False, **options
    )
    summary = submit(config, report=lines.append)
    with open(out, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle)), lines, summary


def test_every_file_gets_one_two_field_row_and_each_unusable_one_a_line(checkpoint, test_dir, tmp_path):
    rows, lines, summary = run_submit(checkpoint, test_dir, tmp_path / "sub.csv")
    names = sorted(path.name for path in test_dir.iterdir())
    assert rows[0] == ["img", "rle_mask"]
    assert [row[0] for row in rows[1:]] == names and {len(row) for row in rows} == {2}
    empty = {name for name, rle in rows[1:] if rle == ""}
    assert set(NOT_IMAGES) <= empty
    assert summary.failed == len(NOT_IMAGES) and summary.done == len(names) - len(NOT_IMAGES)
    assert sorted(Path(line.split(": ")[0]).name for line in lines) == sorted(NOT_IMAGES)


def test_a_name_with_a_comma_round_trips_with_its_mask(checkpoint, test_dir, tmp_path):
    rows, _, _ = run_submit(checkpoint, test_dir, tmp_path / "sub.csv")
    by_name = dict(rows[1:])
    mask = Predictor(checkpoint, precision="fp32").mask(test_dir / "a,b.jpg")
    for name in AWKWARD_NAMES:
        assert np.array_equal(rle_decode(by_name[name], mask.shape), mask), name


def test_sample_submission_names_are_read_and_written_back_quoted(checkpoint, test_dir, tmp_path):
    sample = tmp_path / "sample_submission.csv"
    with open(sample, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["img", "rle_mask"], ["a,b.jpg", "1 1"], ["empty.jpg", "1 1"]])
    rows, lines, summary = run_submit(checkpoint, test_dir, tmp_path / "sub.csv", sample=sample)
    assert [row[0] for row in rows] == ["img", "a,b.jpg", "empty.jpg"] and rows[2][1] == ""
    assert summary.failed == 1 and len(lines) == 1
