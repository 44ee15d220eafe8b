"""Settings that cannot work are refused in one line before any photo runs: a canvas of 100000x100000
(every photo ran the model, then failed allocating 94 GB), thresholds of NaN, 5, -1 or inf (empty or
all-car masks, exit 0), ``cutout -`` with stdin closed, a settings file nested 200,000 deep."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import make_half_car_checkpoint
from PIL import Image
from typer.testing import CliRunner

from maskingnet.cli import app
from maskingnet.outputs.manifest import SETTINGS_NAME
from maskingnet.predict import PredictConfig, predict_files


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_half_car_checkpoint(tmp_path_factory.mktemp("up-front") / "tiny.safetensors")


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGB", (64, 48), (120, 120, 120)).save(folder / "car.png")
    return folder


def refused_in_one_line(args: list[str], naming: str) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and naming in lines[0], result.output
    return lines[0]


def test_a_canvas_of_100000_squared_is_refused_before_any_photo(checkpoint, photos, tmp_path):
    out = tmp_path / "out"
    args = ["predict", str(photos), "-m", str(checkpoint), "--out", str(out), "--canvas", "100000x100000"]
    refused_in_one_line([*args, "--no-progress"], "--canvas 100000x100000")
    assert not out.exists()


@pytest.mark.parametrize("threshold", ["nan", "5", "-1", "inf"])
@pytest.mark.parametrize("verb", ["predict", "cutout", "evaluate", "submit"])
def test_a_threshold_outside_0_to_1_is_refused_by_every_verb(checkpoint, photos, tmp_path, verb, threshold):
    out = tmp_path / "out"
    args = {
        "predict": ["predict", str(photos), "--out", str(out), "--no-progress"],
        "cutout": ["cutout", str(photos / "car.png"), "-o", str(out / "car.png")],
        "evaluate": ["evaluate", "--data", str(photos), "--out", str(out), "--no-progress"],
        "submit": ["submit", str(photos), "--out", str(out / "s.csv"), "--no-progress"],
    }[verb]
    refused_in_one_line([*args, "-m", str(checkpoint), "--threshold", threshold], "--threshold")
    assert not out.exists()


@pytest.mark.parametrize("closed", ["<&-", "<&- >&-"])
def test_cutout_from_a_closed_stdin_is_one_line(checkpoint, closed):
    command = f"{sys.executable} -m maskingnet cutout - -o - -m {checkpoint} {closed}"
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == "cutout: stdin is closed: pipe a photo in, or give its path instead of -"


def test_a_settings_file_nested_200000_deep_is_taken_as_damaged(checkpoint, photos, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / SETTINGS_NAME).write_text("[" * 200_000 + "]" * 200_000)
    config = PredictConfig(checkpoint, [photos], out, save=("mask",), workers=0, progress=False)
    assert predict_files(config, report=lambda line: None).done == 1
    assert isinstance(json.loads((out / SETTINGS_NAME).read_text()), dict)
