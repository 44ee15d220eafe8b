"""The synthetic Carvana generator: layout, formats, exact masks, determinism, CLI errors."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter
from typer.testing import CliRunner

from maskingnet.cli import app
from maskingnet.data.synth import generate, synth_size


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _decode(rle: str, shape: tuple[int, int]) -> np.ndarray:
    """Independent Kaggle RLE decoder: 1-indexed start/length pairs over the C-order pixels."""
    flat = np.zeros(shape[0] * shape[1], dtype=bool)
    numbers = np.array(rle.split(), dtype=np.int64)
    for start, length in zip(numbers[0::2], numbers[1::2], strict=True):
        flat[start - 1 : start - 1 + length] = True
    return flat.reshape(shape)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_cli_writes_the_kaggle_layout(tmp_path):
    out = tmp_path / "s"
    args = ["--out", str(out), "--cars", "2", "--test-cars", "1", "--size", "480x320", "--workers", "1"]
    result = CliRunner().invoke(app, ["synth", *args])
    assert result.exit_code == 0, result.output
    assert len(list((out / "train").glob("*.jpg"))) == 32
    assert len(list((out / "train_masks").glob("*_mask.gif"))) == 32
    assert len(list((out / "test").glob("*.jpg"))) == 16
    assert len(_rows(out / "sample_submission.csv")) == 16


def test_train_masks_csv_rows_decode_to_the_gifs(synth_dir):
    rows = _rows(synth_dir / "train_masks.csv")
    assert len(rows) == 3 * 16
    for row in rows:
        gif = synth_dir / "train_masks" / row["img"].replace(".jpg", "_mask.gif")
        mask = np.array(Image.open(gif)) > 0
        assert np.array_equal(_decode(row["rle_mask"], mask.shape), mask), row["img"]


def test_names_are_twelve_hex_ids_with_sixteen_angles(synth_dir):
    names = sorted(p.stem for p in (synth_dir / "train").glob("*.jpg"))
    assert all(re.fullmatch(r"[0-9a-f]{12}_(0[1-9]|1[0-6])", n) for n in names)
    assert len({n[:12] for n in names}) == 3


def test_masks_are_palette_gifs_with_values_0_and_1(synth_dir):
    image = Image.open(next((synth_dir / "train_masks").glob("*.gif")))
    assert image.format == "GIF" and image.mode == "P"
    assert set(np.unique(np.array(image))) == {0, 1}


def test_images_are_rgb_jpegs_of_the_requested_size(synth_dir):
    image = Image.open(next((synth_dir / "train").glob("*.jpg")))
    assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (96, 64))


def test_metadata_has_one_row_per_car_with_kaggle_columns(synth_dir):
    rows = _rows(synth_dir / "metadata.csv")
    assert list(rows[0]) == ["id", "year", "make", "model", "trim1", "trim2"]
    ids = {p.stem[:12] for folder in ("train", "test") for p in (synth_dir / folder).glob("*.jpg")}
    assert {row["id"] for row in rows} == ids


def test_sample_submission_uses_kaggle_placeholder(synth_dir):
    rows = _rows(synth_dir / "sample_submission.csv")
    assert {row["rle_mask"] for row in rows} == {"1 1"}
    assert {row["img"] for row in rows} == {p.name for p in (synth_dir / "test").glob("*.jpg")}


def test_every_view_has_a_car_of_carvana_like_size(synth_dir):
    fractions = [np.mean(np.array(Image.open(p)) > 0) for p in (synth_dir / "train_masks").glob("*.gif")]
    assert 0.05 < min(fractions) and max(fractions) < 0.5


def test_side_views_are_wider_than_front_views(synth_dir):
    car = next((synth_dir / "train").glob("*_01.jpg")).stem[:12]

    def mask_width(angle: int) -> int:
        mask = np.array(Image.open(synth_dir / "train_masks" / f"{car}_{angle:02d}_mask.gif")) > 0
        return int(np.ptp(np.flatnonzero(mask.any(axis=0))))

    assert mask_width(5) > 1.5 * mask_width(1)
    assert mask_width(13) > 1.5 * mask_width(9)


def test_same_seed_gives_identical_files_whatever_the_workers(tmp_path):
    generate(tmp_path / "a", cars=1, test_cars=1, size=(64, 48), seed=7, workers=1)
    generate(tmp_path / "b", cars=1, test_cars=1, size=(64, 48), seed=7, workers=2)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_other_seed_gives_other_cars(tmp_path):
    generate(tmp_path / "a", cars=1, size=(64, 48), seed=1, workers=1)
    generate(tmp_path / "b", cars=1, size=(64, 48), seed=2, workers=1)
    assert _files(tmp_path / "a") != _files(tmp_path / "b")


def test_cli_rejects_zero_cars_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["synth", "--out", str(tmp_path), "--cars", "0"])
    assert result.exit_code != 0
    assert len(result.output.strip().splitlines()) == 1


def test_cli_rejects_a_size_that_is_not_w_by_h(tmp_path):
    result = CliRunner().invoke(app, ["synth", "--out", str(tmp_path), "--cars", "1", "--size", "480"])
    assert result.exit_code != 0
    assert "WxH" in result.output and len(result.output.strip().splitlines()) == 1


def test_synth_size_reads_w_by_h():
    assert synth_size("480x320") == (480, 320)


def _view_and_empty_studio(seed: int = 5, angle: int = 3, size: tuple[int, int] = (160, 96)):
    from maskingnet.data.synth_render import backdrop, build_scene, detail_for, render_angle

    scene = build_scene(seed, detail_for(size))
    studio = backdrop(seed, scene, size)
    photo, mask = render_angle(seed, scene, studio, angle)
    near_car = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(5))) > 0
    return np.asarray(photo, np.int16), np.asarray(studio, np.int16), mask, ~near_car


def test_outside_the_mask_the_photo_is_the_studio_at_most_darkened():
    photo, studio, _, away = _view_and_empty_studio()
    assert (photo[away] <= studio[away] + 2).all()


def test_the_shadow_darkens_the_floor_but_is_not_car():
    photo, studio, _, away = _view_and_empty_studio()
    assert (studio - photo)[away].max() > 25


def test_a_view_outside_the_sixteen_angles_is_refused():
    from maskingnet.data.synth_render import render_view

    with pytest.raises(ValueError, match="angle"):
        render_view(1, 17, (64, 48))
