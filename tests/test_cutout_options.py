"""``cutout`` takes predict's output options and writes to stdout when piped."""

import io

import numpy as np
import pytest
from helpers import make_half_car_checkpoint
from PIL import Image
from typer.testing import CliRunner

from maskingnet.cli import app


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_half_car_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("in") / "car.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(path)
    return path


def cutout(*args: str):
    return CliRunner().invoke(app, ["cutout", *args])


def test_without_o_a_piped_cutout_goes_to_stdout_as_png(photo, checkpoint):
    result = cutout(str(photo), "-m", str(checkpoint))
    assert result.exit_code == 0, result.output
    image = Image.open(io.BytesIO(result.stdout_bytes))
    assert (image.format, image.mode, image.size) == ("PNG", "RGBA", (48, 32))


def test_format_and_canvas_as_predict_takes_them(photo, checkpoint):
    result = cutout(str(photo), "-m", str(checkpoint), "--format", "webp", "--canvas", "64x40")
    image = Image.open(io.BytesIO(result.stdout_bytes))
    assert (image.format, image.mode, image.size) == ("WEBP", "RGBA", (64, 40))


def test_a_jpg_cutout_is_on_the_background_and_cropped_to_the_car(photo, checkpoint, tmp_path):
    target = tmp_path / "car.jpg"
    result = cutout(
        str(photo),
        "-m",
        str(checkpoint),
        "-o",
        str(target),
        "--crop-to-car",
        "--margin",
        "0",
        "--background",
        "#ff0000",
        "--quality",
        "80",
    )
    assert result.exit_code == 0, result.output
    image = Image.open(target)
    assert image.format == "JPEG" and image.size[0] <= 48 and image.size[1] <= 32


def test_a_bad_canvas_is_one_line(photo, checkpoint):
    result = cutout(str(photo), "-m", str(checkpoint), "--canvas", "big")
    assert result.exit_code == 1 and "--canvas 'big'" in result.output
