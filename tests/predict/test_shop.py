"""``maskingnet predict`` for a web shop: the input tree kept with a manifest, re-runs that notice
changed settings, web formats and framing, and clear ends (empty inputs, odd names, a full disk)."""

import csv
import errno
import io
from pathlib import Path

import numpy as np
import pytest
from helpers import make_half_car_checkpoint
from PIL import Image, features
from typer.testing import CliRunner

import maskingnet.inference.sinks as sinks
from maskingnet.cli import app
from maskingnet.outputs.framing import car_box, framed_box

ODD_NAME = "a,b\nc.jpg"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_half_car_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def photo(path: Path, seed: int = 0, size=(48, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3)  # about half of it car
    pixels = (base * 0.7 + rng.integers(0, 70, base.shape)).astype(np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG")
    return path


def predict(checkpoint: Path, *args: str):
    options = ["-m", str(checkpoint), "--workers", "0", "--no-progress", "--precision", "fp32"]
    return CliRunner().invoke(app, ["predict", *args, *options])


def manifest(out: Path) -> dict[str, dict[str, str]]:
    text = (out / "manifest.csv").read_bytes().decode()
    return {row["input"]: row for row in csv.DictReader(io.StringIO(text, newline=""))}


@pytest.fixture(scope="module")
def shop(tmp_path_factory, checkpoint):
    """A shop's folder of SKUs (one photo with a comma and a newline in its name, one text file named .jpg)
    cut out once."""
    root = tmp_path_factory.mktemp("shop")
    photo(root / "shop" / "sku1" / "front.jpg", 1)
    photo(root / "shop" / "sku2" / "front.jpg", 2)
    photo(root / "shop" / "sku2" / ODD_NAME, 3)
    (root / "shop" / "sku2" / "bad\nname.jpg").write_text("not a photo")
    result = predict(checkpoint, str(root / "shop"), "--out", str(root / "out"), "--save", "mask,cutout")
    return root, result


def test_the_input_tree_is_mirrored_under_out(shop):
    root, _ = shop
    written = sorted(p.relative_to(root / "out").as_posix() for p in (root / "out").rglob("*_cutout.*"))
    assert written == ["sku1/front_cutout.png", "sku2/a,b\nc_cutout.png", "sku2/front_cutout.png"]


def test_the_manifest_lists_every_photo_with_its_outputs_and_status(shop):
    root, _ = shop
    rows = manifest(root / "out")
    assert {name: row["status"] for name, row in rows.items()} == {
        "sku1/front.jpg": "done",
        "sku2/front.jpg": "done",
        f"sku2/{ODD_NAME}": "done",
        "sku2/bad\nname.jpg": "failed",
    }
    done = [row for row in rows.values() if row["status"] == "done"]
    assert all((root / "out" / row["cutout"]).is_file() for row in done)
    assert 0 <= float(rows["sku1/front.jpg"]["car_fraction"]) <= 1
    assert "not an image" in rows["sku2/bad\nname.jpg"]["error"]


def test_an_error_line_about_a_name_with_a_newline_stays_one_line(shop):
    _, result = shop
    assert result.exit_code == 1
    assert [line for line in result.output.splitlines() if "name.jpg" in line] == [
        f"{shop[0] / 'shop' / 'sku2'}/bad\\nname.jpg: not an image (unrecognised content)"
    ]


def test_loose_files_are_placed_relative_to_their_common_parent(tmp_path, checkpoint):
    files = [photo(tmp_path / "in" / sku / "front.jpg", seed) for seed, sku in enumerate(("sku1", "sku2"))]
    result = predict(checkpoint, *map(str, files), "--out", str(tmp_path / "out"), "--save", "mask")
    assert result.exit_code == 0
    assert sorted(manifest(tmp_path / "out")) == ["sku1/front.jpg", "sku2/front.jpg"]
    assert (tmp_path / "out" / "sku2" / "front_mask.png").is_file()


def test_a_rerun_with_other_settings_redoes_the_photos_and_says_why(tmp_path, checkpoint):
    photo(tmp_path / "in" / "car.jpg")
    predict(checkpoint, str(tmp_path / "in"), "--out", str(tmp_path / "out"))
    again = predict(
        checkpoint, str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--soft-edges", "--threshold", "0.3"
    )
    assert again.exit_code == 0 and "1 done, 0 failed, 0 skipped" in again.output
    why = "settings changed since the last run (soft_edges False -> True, threshold 0.5 -> 0.3)"
    assert f"{why}: redoing 1 photo" in again.output


def test_a_rerun_with_another_checkpoint_redoes_the_photos(tmp_path, checkpoint):
    photo(tmp_path / "in" / "car.jpg")
    predict(checkpoint, str(tmp_path / "in"), "--out", str(tmp_path / "out"))
    other = make_half_car_checkpoint(tmp_path / "other.safetensors", input_size=(96, 64))
    again = predict(other, str(tmp_path / "in"), "--out", str(tmp_path / "out"))
    assert "1 done" in again.output and "model tiny.safetensors -> other.safetensors" in again.output


def test_a_resumed_run_keeps_the_rows_of_the_photos_it_skips(tmp_path, checkpoint):
    for seed, name in enumerate(("a.jpg", "b.jpg")):
        photo(tmp_path / "in" / name, seed)
    predict(checkpoint, str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--save", "mask")
    (tmp_path / "out" / "b_mask.png").unlink()
    again = predict(checkpoint, str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--save", "mask")
    rows = manifest(tmp_path / "out")
    assert "1 done, 0 failed, 1 skipped" in again.output
    assert {name: row["status"] for name, row in rows.items()} == {"a.jpg": "done", "b.jpg": "done"}


@pytest.mark.skipif(not features.check("webp"), reason="PIL without WebP")
def test_webp_cutouts_keep_their_transparency(tmp_path, checkpoint):
    photo(tmp_path / "in" / "car.jpg")
    result = predict(
        checkpoint,
        str(tmp_path / "in"),
        "--out",
        str(tmp_path / "out"),
        "--save",
        "cutout",
        "--format",
        "webp",
        "--quality",
        "80",
    )
    with Image.open(tmp_path / "out" / "car_cutout.webp") as image:
        assert result.exit_code == 0 and image.format == "WEBP" and image.mode == "RGBA"


def test_a_jpg_cutout_is_the_car_on_the_background_colour(tmp_path, checkpoint):
    photo(tmp_path / "in" / "car.jpg", size=(96, 64))
    predict(
        checkpoint,
        str(tmp_path / "in"),
        "--out",
        str(tmp_path / "out"),
        "--save",
        "mask,cutout",
        "--format",
        "jpg",
        "--quality",
        "100",
        "--background",
        "#ff0000",
    )
    mask = np.asarray(Image.open(tmp_path / "out" / "car_mask.png")) > 0
    cutout = np.asarray(Image.open(tmp_path / "out" / "car_cutout.jpg")).astype(int)
    backdrop = np.median(cutout[~mask], axis=0)  # JPEG blurs colours along the outline
    assert cutout.ndim == 3 and cutout.shape[2] == 3 and backdrop[0] > 200 and backdrop[1:].max() < 60


def test_crop_to_car_frames_the_cutout_and_keeps_the_mask_whole(tmp_path, checkpoint):
    photo(tmp_path / "in" / "car.jpg", size=(96, 64))
    predict(
        checkpoint,
        str(tmp_path / "in"),
        "--out",
        str(tmp_path / "out"),
        "--save",
        "mask,cutout",
        "--crop-to-car",
        "--margin",
        "0.1",
    )
    mask = np.asarray(Image.open(tmp_path / "out" / "car_mask.png"))
    left, top, right, bottom = framed_box(car_box(mask), 0.1)
    assert mask.shape == (64, 96)
    assert Image.open(tmp_path / "out" / "car_cutout.png").size == (right - left, bottom - top)


def test_a_canvas_gives_every_framed_output_its_size(tmp_path, checkpoint):
    photo(tmp_path / "in" / "car.jpg")
    predict(
        checkpoint,
        str(tmp_path / "in"),
        "--out",
        str(tmp_path / "out"),
        "--save",
        "cutout,white",
        "--canvas",
        "80x60",
    )
    sizes = {path.name: Image.open(path).size for path in (tmp_path / "out").glob("car_*")}
    assert sizes == {"car_cutout.png": (80, 60), "car_white.jpg": (80, 60)}


def test_a_quality_out_of_range_is_one_line(tmp_path, checkpoint):
    photo(tmp_path / "in" / "car.jpg")
    result = predict(checkpoint, str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--quality", "0")
    assert result.exit_code == 1 and "predict: quality 0: expected 1-100" in result.output


def test_an_empty_folder_is_an_error_not_zero_done(tmp_path, checkpoint):
    (tmp_path / "empty").mkdir()
    result = predict(checkpoint, str(tmp_path / "empty"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1 and f"{tmp_path / 'empty'}: no images in this folder" in result.output


def test_a_glob_that_matches_nothing_is_an_error(tmp_path, checkpoint):
    result = predict(checkpoint, str(tmp_path / "*.jpg"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1 and "no file matches this pattern" in result.output


def test_a_full_disk_stops_the_run_with_one_line(tmp_path, checkpoint, monkeypatch):
    for seed in range(3):
        photo(tmp_path / "in" / f"car{seed}.jpg", seed)

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(sinks, "write_output", full)
    result = predict(checkpoint, str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--save", "mask")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1
    expected = f"predict: {tmp_path / 'out'}: cannot write outputs (No space left on device): stopping"
    assert lines[0] == expected
