"""What ``predict`` says: the bundled weights' terms first, one-line errors that name the option, and no
output folder for a mistyped input."""

import numpy as np
import pytest
from helpers import make_half_car_checkpoint
from PIL import Image
from typer.testing import CliRunner

from maskingnet.cli import app


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_half_car_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def predict(*args: str):
    return CliRunner().invoke(app, ["predict", *args, "--workers", "0", "--no-progress"])


def test_a_mistyped_input_path_is_one_line_and_creates_no_output_folder(tmp_path, checkpoint):
    result = predict(str(tmp_path / "photoss"), "--out", str(tmp_path / "out"), "-m", str(checkpoint))
    assert result.exit_code == 1 and str(tmp_path / "photoss") in result.output
    assert not (tmp_path / "out").exists()


def test_a_bad_canvas_names_the_canvas(tmp_path, checkpoint):
    result = predict(
        str(tmp_path), "--out", str(tmp_path / "out"), "--canvas", "1600by1200", "-m", str(checkpoint)
    )
    assert result.exit_code == 1 and "--canvas '1600by1200': expected WxH" in result.output


def test_the_bundled_model_s_terms_come_first(tmp_path):
    result = predict(str(tmp_path / "none"), "--out", str(tmp_path / "out"))
    assert result.output.splitlines()[0].startswith("predict: note: the bundled model's weights")
    assert "non-commercial" in result.output.splitlines()[0]


def test_one_s_own_model_comes_without_the_terms(tmp_path, checkpoint):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(folder / "car.jpg")
    result = predict(str(folder), "--out", str(tmp_path / "out"), "-m", str(checkpoint))
    assert result.exit_code == 0 and "non-commercial" not in result.output


def test_jpg_cutout_and_white_write_one_picture_and_say_why(tmp_path, checkpoint):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(folder / "car.jpg")
    result = predict(
        str(folder),
        "--out",
        str(tmp_path / "out"),
        "-m",
        str(checkpoint),
        "--format",
        "jpg",
        "--save",
        "cutout,white",
    )
    assert result.exit_code == 0 and "writing 'white' only" in result.output
    assert sorted(path.name for path in (tmp_path / "out").glob("car_*")) == ["car_white.jpg"]
