"""Evaluation: Dice at the original resolution on the run's val cars, the three outputs, bad input."""

import csv
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from maskingnet.cli import app
from maskingnet.evaluate import EvaluateError, evaluate

SUMMARY_KEYS = {
    "mean_dice",
    "one_minus_dice_pixels_per_image",
    "images",
    "model",
    "params",
    "size",
    "seconds",
}


@pytest.fixture(scope="module")
def val_eval(trained_run, synth_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "val"
    evaluate(trained_run / "checkpoints" / "best.safetensors", synth_dir, out=out, workers=0, progress=False)
    return out


def read_rows(out: Path) -> list[dict]:
    with open(out / "per_image.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def run_config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


def test_evaluate_writes_summary_per_image_csv_and_worst_picture(val_eval):
    assert sorted(p.name for p in val_eval.iterdir()) == ["per_image.csv", "summary.json", "worst.png"]


def test_summary_has_the_issue_fields(val_eval):
    summary = json.loads((val_eval / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)


def test_val_split_evaluates_exactly_the_runs_val_images(val_eval, trained_run):
    assert sorted(row["id"] for row in read_rows(val_eval)) == run_config(trained_run)["split"]["val_ids"]


def test_dice_is_measured_at_the_original_resolution(val_eval):
    # The model ran at 64x64; the synthetic photos are 96x64.
    assert {(row["width"], row["height"]) for row in read_rows(val_eval)} == {("96", "64")}


def test_mean_dice_is_the_mean_of_the_per_image_dice(val_eval):
    summary = json.loads((val_eval / "summary.json").read_text())
    rows = read_rows(val_eval)
    assert summary["mean_dice"] == pytest.approx(sum(float(r["dice"]) for r in rows) / len(rows), abs=1e-6)


def test_worst_picture_has_four_panels_side_by_side(val_eval):
    width, height = Image.open(val_eval / "worst.png").size
    assert width > 3 * height / 8  # eight rows of four panels: far wider than one panel per row


def test_split_all_evaluates_every_labelled_image(trained_run, synth_dir, tmp_path):
    summary = evaluate(
        trained_run / "checkpoints" / "best.safetensors",
        synth_dir,
        split="all",
        out=tmp_path,
        workers=0,
        worst=2,
        progress=False,
    )
    assert summary["images"] == 48


def test_checkpoint_outside_its_run_folder_uses_the_val_cars_in_its_meta(trained_run, synth_dir, tmp_path):
    lone = tmp_path / "lone.safetensors"
    shutil.copy(trained_run / "checkpoints" / "best.safetensors", lone)
    evaluate(lone, synth_dir, out=tmp_path / "out", workers=0, worst=2, progress=False)
    cars = {row["car_id"] for row in read_rows(tmp_path / "out")}
    assert cars == set(run_config(trained_run)["split"]["val_cars"])


def test_unknown_split_is_refused(trained_run, synth_dir, tmp_path):
    with pytest.raises(EvaluateError, match="split"):
        evaluate(trained_run / "checkpoints" / "best.safetensors", synth_dir, split="test", out=tmp_path)


def corrupt_copy(synth_dir: Path, tmp_path: Path, image_id: str) -> Path:
    data = tmp_path / "data"
    shutil.copytree(synth_dir, data)
    (data / "train" / f"{image_id}.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return data


def test_cli_reports_an_unreadable_image_and_exits_non_zero_after_the_rest(trained_run, synth_dir, tmp_path):
    val_id = run_config(trained_run)["split"]["val_ids"][0]
    data = corrupt_copy(synth_dir, tmp_path, val_id)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "-m",
            str(trained_run / "checkpoints" / "best.safetensors"),
            "--data",
            str(data),
            "--out",
            str(out),
            "--workers",
            "0",
            "--no-progress",
        ],
    )
    assert result.exit_code == 1
    assert val_id in result.output
    assert json.loads((out / "summary.json").read_text())["images"] == 15
