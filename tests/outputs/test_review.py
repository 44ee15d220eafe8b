"""Review flags: which cut-outs a person should look at (maskingnet.outputs.review and the manifest's
columns)."""

import csv
import io

import numpy as np
import pytest
from helpers import make_half_car_checkpoint
from PIL import Image
from typer.testing import CliRunner

from maskingnet.cli import app
from maskingnet.outputs.review import review_photo, shape_flags, summary_lines, unsure_width


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return make_half_car_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def car_mask(height=120, width=180) -> np.ndarray:
    """A side view: a wide body with a narrower cabin on top, standing inside the frame."""
    mask = np.zeros((height, width), bool)
    mask[60:100, 20:160] = True  # body
    mask[35:60, 55:125] = True  # cabin
    return mask


def test_a_sharp_outline_is_one_pixel_wide():
    probs = np.zeros((64, 96), np.float32)
    probs[20:44, 20:76] = 1.0
    probs[19, 20:76] = probs[44, 20:76] = probs[20:44, 19] = probs[20:44, 76] = 0.5  # one pixel all round
    assert unsure_width(probs) == pytest.approx(1.0, abs=0.1)


def test_a_hesitant_outline_is_wide_and_a_map_without_a_car_is_unsure():
    probs = np.zeros((64, 96), np.float32)
    probs[16:48, 16:80] = 0.5  # a blurred edge four pixels wide
    probs[20:44, 20:76] = 1.0
    assert unsure_width(probs) > 2
    assert unsure_width(np.full((64, 96), 0.3, np.float32)) == float("inf")
    assert "unsure" in review_photo(car_mask(), probs).flags


def test_an_upright_car_inside_the_frame_raises_no_flag():
    assert shape_flags(car_mask()) == []


def test_a_car_touching_the_frame_is_flagged():
    mask = car_mask()
    mask[60:100, 0:20] = True
    assert "frame" in shape_flags(mask)


def test_a_small_car_is_flagged():
    mask = np.zeros((1000, 1500), bool)
    mask[500:530, 700:760] = True
    assert "small" in shape_flags(mask)


def test_a_big_upscale_is_flagged_and_a_small_one_not():
    assert "upscale" in review_photo(car_mask(), None, upscale=8.0).flags
    assert "upscale" not in review_photo(car_mask(), None, upscale=1.5).flags


def test_the_end_of_run_lines_are_one_per_flag_and_name_the_photos():
    lines = summary_lines([("a.jpg", ["unsure", "sideways"]), ("b.jpg", ["unsure"])])
    assert len(lines) == 2
    assert lines[0].startswith("review unsure: 2 photos") and "a.jpg, b.jpg" in lines[0]
    assert lines[1].startswith("review sideways: 1 photo,")


def test_predict_writes_the_review_columns_and_says_the_flags_at_the_end(tmp_path, tiny_checkpoint):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(folder / "car.jpg")
    command = [
        "predict",
        str(folder),
        "--out",
        str(tmp_path / "out"),
        "-m",
        str(tiny_checkpoint),
        "--workers",
        "0",
        "--no-progress",
    ]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "manifest.csv").read_text(), newline="")))
    row = rows[0]
    assert float(row["unsure_px"]) >= 0
    for flag in row["review"].split():
        assert f"review {flag}: 1 photo" in result.output


def test_every_photo_of_a_batch_gets_its_own_seconds(tmp_path, tiny_checkpoint):
    folder = tmp_path / "in"
    folder.mkdir()
    for seed in range(3):
        pixels = np.random.default_rng(seed).integers(0, 255, (32, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"car{seed}.jpg")
    command = [
        "predict",
        str(folder),
        "--out",
        str(tmp_path / "out"),
        "-m",
        str(tiny_checkpoint),
        "--workers",
        "0",
        "--no-progress",
        "--batch-size",
        "4",
    ]
    assert CliRunner().invoke(app, command).exit_code == 0
    rows = list(csv.DictReader(open(tmp_path / "out" / "manifest.csv", newline="")))
    assert len(rows) == 3 and all(float(row["seconds"]) > 0 for row in rows)


def test_the_bundled_model_flags_turned_photos_and_not_the_upright_one(tmp_path, real_sample):
    photo = real_sample / "train" / "1adaeb44f109_03.jpg"
    folder = tmp_path / "in"
    folder.mkdir()
    Image.open(photo).save(folder / "upright.jpg", quality=95)
    Image.open(photo).transpose(Image.Transpose.ROTATE_90).save(folder / "sideways.jpg", quality=95)
    Image.open(photo).transpose(Image.Transpose.ROTATE_180).save(folder / "upside_down.jpg", quality=95)
    command = [
        "predict",
        str(folder),
        "--out",
        str(tmp_path / "out"),
        "--save",
        "mask",
        "--workers",
        "0",
        "--no-progress",
    ]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    rows = {row["input"]: row for row in csv.DictReader(open(tmp_path / "out" / "manifest.csv", newline=""))}
    assert rows["upright.jpg"]["review"] == ""
    assert rows["sideways.jpg"]["review"] == "unsure sideways"
    assert rows["upside_down.jpg"]["review"].startswith("unsure upside-down")
    assert "review sideways: 1 photo" in result.output and "review upside-down: 1 photo" in result.output
