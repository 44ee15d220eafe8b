import csv
import gzip
import io
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import make_half_car_checkpoint
from PIL import Image

import maskingnet.inference.sinks as sinks
import maskingnet.submit as submit_module
from maskingnet.data.rle import rle_decode
from maskingnet.inference import ModelSettings
from maskingnet.predict import Predictor
from maskingnet.submit import SubmitConfig, SubmitSummary, part_files, submit


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_half_car_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture(scope="module")
def kaggle_dir(tmp_path_factory, synth_dir) -> Path:
    """The synthetic test set, its sample_submission.csv shuffled so that its order is not the sorted one."""
    root = tmp_path_factory.mktemp("kaggle")
    shutil.copytree(synth_dir / "test", root / "test")
    names = sorted(path.name for path in (root / "test").iterdir())
    random.Random(1).shuffle(names)
    write_sample(root / "sample_submission.csv", names)
    return root


def write_sample(path: Path, names: list[str]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["img", "rle_mask"])
        writer.writerows([name, "1 1"] for name in names)


def read_rows(path: Path) -> list[list[str]]:
    data = Path(path).read_bytes()
    if str(path).endswith(".gz"):
        data = gzip.decompress(data)
    return list(csv.reader(io.StringIO(data.decode())))


def sample_names(root: Path) -> list[str]:
    return [row[0] for row in read_rows(root / "sample_submission.csv")[1:]]


def config(checkpoint: Path, test_dir: Path, out: Path, **options) -> SubmitConfig:
    return SubmitConfig(
        ModelSettings(checkpoint, precision="fp32"), test_dir, out, workers=0, progress=False, **options
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory, checkpoint, kaggle_dir) -> Path:
    out = tmp_path_factory.mktemp("reference") / "submission.csv.gz"
    submit(config(checkpoint, kaggle_dir / "test", out))
    return out


def test_rows_follow_sample_submission_order_under_the_kaggle_header(reference, kaggle_dir):
    rows = read_rows(reference)
    assert rows[0] == ["img", "rle_mask"] and [row[0] for row in rows[1:]] == sample_names(kaggle_dir)


def test_rows_decode_to_the_predictors_masks(reference, kaggle_dir, checkpoint):
    predictor = Predictor(checkpoint, precision="fp32")
    for name, rle in read_rows(reference)[1:]:
        mask = predictor.mask(kaggle_dir / "test" / name)
        assert np.array_equal(rle_decode(rle, mask.shape), mask), name


def test_masks_are_encoded_at_each_image_own_resolution(reference, kaggle_dir):
    name, rle = read_rows(reference)[1]
    width, height = Image.open(kaggle_dir / "test" / name).size
    assert rle_decode(rle, (height, width)).shape == (height, width)


def test_plain_csv_holds_the_same_rows_as_gzip(tmp_path, reference, checkpoint, kaggle_dir):
    submit(config(checkpoint, kaggle_dir / "test", tmp_path / "submission.csv"))
    assert read_rows(tmp_path / "submission.csv") == read_rows(reference)


def test_without_sample_submission_rows_are_sorted_by_name(tmp_path, checkpoint, kaggle_dir):
    shutil.copytree(kaggle_dir / "test", tmp_path / "test")
    submit(config(checkpoint, tmp_path / "test", tmp_path / "sub.csv"))
    names = [row[0] for row in read_rows(tmp_path / "sub.csv")[1:]]
    assert names == sorted(path.name for path in (tmp_path / "test").iterdir())


def test_no_part_or_progress_files_remain_after_a_finished_run(reference):
    names = sorted(path.name for path in reference.parent.iterdir())
    assert names == [".submission.csv.gz.done.json", "submission.csv.gz"]


def test_interrupted_submit_with_a_torn_chunk_resumes_to_the_same_file(
    tmp_path, monkeypatch, reference, checkpoint, kaggle_dir
):
    out = tmp_path / "submission.csv.gz"
    sixth = sample_names(kaggle_dir)[5]
    real_encode = sinks.encode_row

    def encode_until_the_sixth(name, *args):
        if name == sixth:
            raise KeyboardInterrupt
        return real_encode(name, *args)

    monkeypatch.setattr(sinks, "encode_row", encode_until_the_sixth)
    with pytest.raises(KeyboardInterrupt):
        submit(config(checkpoint, kaggle_dir / "test", out, flush_every=2, batch_size=1))
    monkeypatch.undo()
    partial, _progress = part_files(out, 0, 1)
    with open(partial, "ab") as handle:
        handle.write(b"\x1f\x8b half a gzip member")  # what a kill in the middle of a write leaves
    summary = submit(config(checkpoint, kaggle_dir / "test", out, flush_every=2))
    assert summary.resumed == 4 and read_rows(out) == read_rows(reference)


def test_bad_test_image_gets_an_empty_row_a_named_line_and_a_failure(tmp_path, checkpoint, kaggle_dir):
    shutil.copytree(kaggle_dir / "test", tmp_path / "test")
    names = sample_names(kaggle_dir)
    (tmp_path / "test" / names[2]).write_bytes(b"")
    write_sample(tmp_path / "sample_submission.csv", names)
    lines = []
    summary = submit(config(checkpoint, tmp_path / "test", tmp_path / "sub.csv"), report=lines.append)
    rows = read_rows(tmp_path / "sub.csv")
    assert summary.failed == 1 and rows[3] == [names[2], ""] and len(rows) == len(names) + 1
    assert summary.done == len(names) - 1 and [line.split(": ")[0] for line in lines] == [
        str(tmp_path / "test" / names[2])
    ]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    return env


def test_killed_submit_resumes_to_a_complete_file(tmp_path, reference, checkpoint, kaggle_dir):
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    names = []
    for copy in range(4):
        for source in sorted((kaggle_dir / "test").iterdir()):
            name = f"{copy:02d}_{source.name}"
            shutil.copy(source, test_dir / name)
            names.append(name)
    write_sample(tmp_path / "sample_submission.csv", names)
    out = tmp_path / "submission.csv.gz"
    args = [
        sys.executable,
        "-m",
        "maskingnet",
        "submit",
        "--model",
        str(checkpoint),
        str(test_dir),
        "--out",
        str(out),
        "--flush-every",
        "1",
        "--batch-size",
        "1",
        "--workers",
        "0",
        "--no-progress",
        "--precision",
        "fp32",
    ]
    _partial, progress = part_files(out, 0, 1)
    process = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=subprocess_env()
    )
    try:
        while process.poll() is None and submit_module.read_progress(progress).get("rows", 0) < 3:
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    rows_at_kill = submit_module.read_progress(progress).get("rows", 0)
    rerun = submit(config(checkpoint, test_dir, out, flush_every=16))
    rows = read_rows(out)
    assert 0 < rows_at_kill < len(names) and rerun.resumed == rows_at_kill and rerun.failed == 0
    assert [row[0] for row in rows[1:]] == names


def test_two_torchrun_processes_write_the_same_file_as_one(tmp_path, reference, checkpoint, kaggle_dir):
    out = tmp_path / "submission.csv.gz"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "maskingnet",
        "submit",
        "--model",
        str(checkpoint),
        str(kaggle_dir / "test"),
        "--out",
        str(out),
        "--workers",
        "0",
        "--no-progress",
        "--precision",
        "fp32",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert result.returncode == 0, result.stderr
    assert read_rows(out) == read_rows(reference)


def test_kaggle_estimate_extrapolates_to_100064_images():
    summary = SubmitSummary(out=Path("s.csv"), done=100, seconds=10.0, world=2)
    assert submit_module.kaggle_estimate(summary).endswith("100,064 test images at this rate: ~1h23m")


def test_a_finished_part_of_another_job_is_not_merged(tmp_path):
    progress = tmp_path / "progress.json"
    progress.write_text('{"fingerprint": "an earlier job", "rows": 8, "bytes": 100, "complete": true}')
    assert not submit_module.part_is_done(progress, "this job")


def test_a_part_left_by_other_options_is_redone_not_resumed(tmp_path, reference, checkpoint, kaggle_dir):
    out = tmp_path / "submission.csv.gz"
    partial, progress = part_files(out, 0, 1)
    partial.write_bytes(b"stale")
    progress.write_text('{"fingerprint": "threshold 0.3", "rows": 3, "bytes": 5, "complete": false}')
    lines = []
    summary = submit(config(checkpoint, kaggle_dir / "test", out), report=lines.append)
    assert summary.resumed == 0 and read_rows(out) == read_rows(reference) and "another job" in lines[0]


def invoke_submit(checkpoint: Path, test_dir: Path, out: Path, *options: str):
    from typer.testing import CliRunner

    from maskingnet.cli import app

    args = [
        "submit",
        "-m",
        str(checkpoint),
        str(test_dir),
        "--out",
        str(out),
        "--workers",
        "0",
        "--no-progress",
        "--precision",
        "fp32",
        *options,
    ]
    return CliRunner().invoke(app, args)


def test_a_finished_submission_of_the_same_job_is_not_recomputed(tmp_path, reference, checkpoint, kaggle_dir):
    out = tmp_path / "submission.csv.gz"
    shutil.copy(reference, out)
    assert invoke_submit(checkpoint, kaggle_dir / "test", out).exit_code == 0  # no record: computed again
    before = out.stat().st_mtime_ns
    again = invoke_submit(checkpoint, kaggle_dir / "test", out)
    assert again.exit_code == 0 and "already complete with the same model and settings" in again.output
    assert out.stat().st_mtime_ns == before and "0 done" in again.output


def test_a_finished_submission_is_redone_when_a_setting_changes(tmp_path, checkpoint, kaggle_dir):
    out = tmp_path / "submission.csv"
    invoke_submit(checkpoint, kaggle_dir / "test", out)
    rows = len(read_rows(out)) - 1
    again = invoke_submit(checkpoint, kaggle_dir / "test", out, "--threshold", "0.3")
    assert again.exit_code == 0 and f"{rows} done" in again.output
    assert f"settings changed since the last run (threshold 0.5 -> 0.3): redoing {rows} rows" in again.output


def test_a_finished_submission_is_redone_with_another_model(tmp_path, checkpoint, kaggle_dir):
    out = tmp_path / "submission.csv"
    invoke_submit(checkpoint, kaggle_dir / "test", out)
    other = make_half_car_checkpoint(tmp_path / "other.safetensors", input_size=(96, 64))
    again = invoke_submit(other, kaggle_dir / "test", out)
    assert "model tiny.safetensors -> other.safetensors" in again.output and "0 done" not in again.output
