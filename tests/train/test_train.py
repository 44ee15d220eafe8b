"""Training: the run folder, exact resume after kill -9, torchrun with 2 CPU processes, NaN stop."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from maskingnet.cli import app
from maskingnet.models import create_model, load_model, save_model
from maskingnet.train import (
    NonFiniteLossError,
    RunFolder,
    TrainConfig,
    TrainError,
    epoch_seed,
    resolve_train_precision,
    rng_state,
    set_rng_state,
    train,
)
from maskingnet.train import loop as train_loop
from maskingnet.train import network as train_network

TINY = ["--width", "0.125", "--size", "64", "--threads", "1", "--workers", "0", "--no-progress"]
TINY_SETTINGS = {"width": 0.125, "size": (64, 64), "threads": 1, "workers": 0, "progress": False}
METRIC_KEYS = {"epoch", "lr", "train_loss", "val_loss", "val_dice", "images_per_s", "seconds"}
SAME_RUN_KEYS = ("epoch", "lr", "train_loss", "val_loss", "val_dice", "steps")


@pytest.fixture(autouse=True)
def restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def subprocess_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_trained_run_writes_every_file_of_the_run_folder(trained_run):
    expected = [
        "config.json",
        "metrics.jsonl",
        "curves.png",
        "checkpoints/last.safetensors",
        "checkpoints/best.safetensors",
        "checkpoints/last.state.pt",
    ]
    assert [name for name in expected if not (trained_run / name).is_file()] == []


def test_trained_run_leaves_no_temporary_files(trained_run):
    assert [p.name for p in trained_run.rglob("*") if p.name.startswith(".")] == []


def test_metrics_have_one_row_per_epoch_with_every_column(trained_run):
    rows = read_metrics(trained_run)
    assert [row["epoch"] for row in rows] == [1, 2]
    assert all(METRIC_KEYS <= set(row) for row in rows)


def test_config_records_settings_a_split_by_car_and_versions(trained_run):
    config = json.loads((trained_run / "config.json").read_text())
    split = config["split"]
    assert config["settings"]["size"] == [64, 64]
    assert split["val_cars"] and not set(split["val_cars"]) & set(split["train_cars"])
    assert "torch" in config["versions"]


def test_best_checkpoint_loads_with_meta_for_evaluation(trained_run):
    model = load_model(trained_run / "checkpoints" / "best.safetensors")
    meta = model.meta
    assert meta["input_size"] == [64, 64]
    assert {"epoch", "val_dice", "data", "split"} <= set(meta)


def test_training_state_loads_with_weights_only(trained_run):
    state = torch.load(trained_run / "checkpoints" / "last.state.pt", weights_only=True)
    assert state["epoch"] == 2
    assert {"optimizer", "scheduler", "rng", "model"} <= set(state)


def test_existing_run_is_not_overwritten_without_resume(trained_run, synth_dir):
    with pytest.raises(TrainError, match="--resume"):
        train(TrainConfig(data=str(synth_dir), out=str(trained_run), epochs=2, **TINY_SETTINGS))


def test_resume_refuses_changed_model_settings(trained_run, synth_dir):
    config = TrainConfig(
        data=str(synth_dir), out=str(trained_run), epochs=3, resume=True, **{**TINY_SETTINGS, "width": 0.25}
    )
    with pytest.raises(TrainError, match="width"):
        train(config)


def test_cli_trains_then_resumes_from_the_stored_settings_to_more_epochs(synth_dir, tmp_path):
    out = tmp_path / "cli"
    threads = torch.get_num_threads()
    first = CliRunner().invoke(
        app, ["train", "--data", str(synth_dir), "--out", str(out), "--epochs", "1", *TINY]
    )
    more = CliRunner().invoke(app, ["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"])
    torch.set_num_threads(threads)
    assert (first.exit_code, more.exit_code) == (0, 0), first.output + more.output
    assert [row["epoch"] for row in read_metrics(out)] == [1, 2]


def test_cli_train_without_data_says_what_is_missing(tmp_path):
    result = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "nothing")])
    assert result.exit_code == 1
    assert "--data is required" in result.output


def wait_for_first_epoch(run: Path, process: subprocess.Popen, timeout: float = 240.0) -> None:
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if metrics.exists() and metrics.read_text().strip():
            return
        time.sleep(0.02)
    raise AssertionError(f"no epoch finished before the kill (exit code {process.poll()})")


def start_training(synth_dir: Path, out: Path, *options: str) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "maskingnet",
        "train",
        "--data",
        str(synth_dir),
        "--out",
        str(out),
        *options,
    ]
    return subprocess.Popen(
        command, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def same_run_columns(run: Path) -> list[dict]:
    return [{key: row[key] for key in SAME_RUN_KEYS} for row in read_metrics(run)]


@pytest.fixture(scope="module")
def straight_and_resumed_runs(synth_dir, tmp_path_factory) -> tuple[Path, Path]:
    """The same 2-epoch run twice: uninterrupted, and killed with SIGKILL after epoch 1 then resumed."""
    root = tmp_path_factory.mktemp("resume")
    settings = {**TINY_SETTINGS, "data": str(synth_dir), "epochs": 2, "augment": True, "lr_step": 1}
    threads = torch.get_num_threads()
    try:
        train(TrainConfig(out=str(root / "straight"), **settings))
        process = start_training(
            synth_dir, root / "killed", "--epochs", "2", "--augment", "--lr-step", "1", *TINY
        )
        wait_for_first_epoch(root / "killed", process)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert len(read_metrics(root / "killed")) == 1, "the run finished before it could be killed"
        train(TrainConfig(out=str(root / "killed"), resume=True, **settings))
    finally:
        torch.set_num_threads(threads)
    return root / "straight", root / "killed"


def test_kill9_then_resume_ends_with_the_same_metrics_as_an_uninterrupted_run(straight_and_resumed_runs):
    straight, resumed = straight_and_resumed_runs
    assert same_run_columns(resumed) == same_run_columns(straight)


def test_kill9_then_resume_ends_with_the_same_weights_as_an_uninterrupted_run(straight_and_resumed_runs):
    straight, resumed = (
        load_file(run / "checkpoints" / "last.safetensors") for run in straight_and_resumed_runs
    )
    assert [name for name in straight if not torch.equal(straight[name], resumed[name])] == []


def test_torchrun_trains_with_two_cpu_processes(synth_dir, tmp_path):
    out = tmp_path / "ddp"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command = [
        *torchrun,
        "-m",
        "maskingnet",
        "train",
        "--data",
        str(synth_dir),
        "--out",
        str(out),
        "--epochs",
        "1",
        *TINY,
    ]
    result = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2
    assert [row["epoch"] for row in read_metrics(out)] == [1]
    assert load_model(out / "checkpoints" / "best.safetensors").meta["epoch"] == 1


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(synth_dir, tmp_path, monkeypatch):
    real_loss = train_loop.make_loss("ce")
    train_steps = []

    def loss_that_explodes_in_epoch_two(name):
        def loss(logits, target):
            value = real_loss(logits, target)
            if torch.is_grad_enabled():
                train_steps.append(1)
                if len(train_steps) > 8:  # 32 train images, batch 4: epoch 2 starts at call 9
                    return value * float("nan")
            return value

        return loss

    monkeypatch.setattr(train_loop, "make_loss", loss_that_explodes_in_epoch_two)
    out = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match="epoch 2"):
        train(TrainConfig(data=str(synth_dir), out=str(out), epochs=3, **TINY_SETTINGS))
    assert load_model(out / "checkpoints" / "last.safetensors").meta["epoch"] == 1


def test_max_steps_ends_the_run_early(synth_dir, tmp_path):
    summary = train(
        TrainConfig(data=str(synth_dir), out=str(tmp_path / "short"), epochs=3, max_steps=2, **TINY_SETTINGS)
    )
    assert summary["stopped"] == "max_steps"
    assert [(row["epoch"], row["steps"]) for row in read_metrics(tmp_path / "short")] == [(1, 2)]


def test_config_rejects_unknown_loss():
    with pytest.raises(ValueError, match="loss"):
        TrainConfig(loss="focal")


def test_epoch_seed_depends_on_seed_epoch_and_rank():
    seeds = {epoch_seed(s, e, r) for s in (0, 1) for e in (1, 2) for r in (0, 1)}
    assert len(seeds) == 8


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    state = rng_state()
    expected = torch.rand(3)
    torch.save(state, tmp_path / "rng.pt")
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert torch.equal(torch.rand(3), expected)


def test_auto_precision_on_cpu_is_bf16_exactly_where_the_cpu_has_native_bf16():
    from maskingnet.inference import cpu_bf16_supported

    expected = "bf16" if cpu_bf16_supported() else "fp32"
    assert resolve_train_precision("auto", torch.device("cpu")) == expected


def test_fp16_training_on_cpu_is_refused():
    with pytest.raises(TrainError, match="fp16"):
        resolve_train_precision("fp16", torch.device("cpu"))


def test_init_from_starts_from_the_given_weights_and_carries_its_refiner(trained_run, synth_dir, tmp_path):
    from maskingnet.models.checkpoint import attach_refiner, load_refiner
    from maskingnet.models.refiner import Refiner, RefinerConfig

    source = trained_run / "checkpoints" / "best.safetensors"
    with_refiner = attach_refiner(source, Refiner(RefinerConfig(channels=4)), tmp_path / "init.safetensors")
    out = tmp_path / "tuned"
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--data",
            str(synth_dir),
            "--out",
            str(out),
            "--init-from",
            str(with_refiner),
            "--epochs",
            "1",
            "--max-steps",
            "1",
            "--lr",
            "1e-9",
            "--threads",
            "1",
            "--workers",
            "0",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    tuned, start = load_model(out / "checkpoints" / "last.safetensors"), load_model(source)
    assert tuned.config == start.config and tuned.meta["input_size"] == start.meta["input_size"]
    pairs = zip(tuned.parameters(), start.parameters(), strict=True)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in pairs)
    assert load_refiner(out / "checkpoints" / "last.safetensors").config.channels == 4


def test_init_from_refuses_another_architecture_in_one_line(trained_run, synth_dir, tmp_path):
    source = trained_run / "checkpoints" / "best.safetensors"
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--data",
            str(synth_dir),
            "--out",
            str(tmp_path / "x"),
            "--init-from",
            str(source),
            "--model",
            "unet",
            *TINY,
        ],
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "maskingnet width 0.125" in lines[0] and "unet" in lines[0]


# ----------------------------------------------------------------------- damaged runs


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    """A private copy of the finished 2-epoch run, free to damage."""
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    return copy


def resume_by_cli(run: Path, *options: str):
    return CliRunner().invoke(app, ["train", "--out", str(run), "--resume", "--no-progress", *options])


def test_resume_from_a_truncated_state_file_fails_in_one_line(run_copy):
    state = run_copy / "checkpoints" / "last.state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    result = resume_by_cli(run_copy, "--epochs", "3")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert "last.state.pt: cannot be read" in lines[0] and "--init-from" in lines[0]


def test_resume_from_a_state_file_that_is_not_a_training_state_fails_in_one_line(run_copy):
    torch.save({"epoch": 2}, run_copy / "checkpoints" / "last.state.pt")
    result = resume_by_cli(run_copy, "--epochs", "3")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert "not a complete training state" in lines[0]


@pytest.mark.parametrize("resume", [True, False])
def test_a_run_with_checkpoints_but_no_state_file_is_refused_and_its_best_kept(run_copy, synth_dir, resume):
    (run_copy / "checkpoints" / "last.state.pt").unlink()
    best = run_copy / "checkpoints" / "best.safetensors"
    before = best.read_bytes()
    if resume:
        result = resume_by_cli(run_copy)
    else:
        result = CliRunner().invoke(app, ["train", "--data", str(synth_dir), "--out", str(run_copy), *TINY])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert "no last.state.pt" in lines[0] and "--init-from" in lines[0]
    assert best.read_bytes() == before


def test_checkpoints_of_an_uncommitted_first_epoch_do_not_block_a_restart(tmp_path):
    folder = RunFolder(tmp_path / "run")
    model = create_model("maskingnet", width=0.125)
    save_model(model, folder.best, meta={"epoch": 1, "val_dice": 0.5})
    assert folder.check_checkpoints_without_state() is True
    save_model(model, folder.last, meta={"epoch": 2, "val_dice": 0.4})
    with pytest.raises(TrainError, match="no last.state.pt"):
        folder.check_checkpoints_without_state()


def test_resume_keeps_a_best_checkpoint_better_than_the_state_knows(run_copy, capsys):
    best = run_copy / "checkpoints" / "best.safetensors"
    model = load_model(best)
    save_model(model, best, meta={**model.meta, "epoch": 2, "val_dice": 1.5})
    before = best.read_bytes()
    summary = train(TrainConfig.from_run(run_copy, resume=True, epochs=3))
    assert best.read_bytes() == before
    assert (summary["best_dice"], summary["best_epoch"]) == (1.5, 2)
    assert "is kept until an epoch beats it" in capsys.readouterr().err


def test_resume_does_not_load_the_vgg_weights_over_the_restored_ones(run_copy, monkeypatch):
    config = json.loads((run_copy / "config.json").read_text())
    config["settings"]["vgg_weights"] = str(run_copy / "vgg16.pth")
    (run_copy / "config.json").write_text(json.dumps(config))
    calls = []
    monkeypatch.setattr(train_network, "load_vgg_weights", lambda model, path: calls.append(path) or [])
    train(TrainConfig.from_run(run_copy, resume=True, epochs=3))
    assert calls == [] and [row["epoch"] for row in read_metrics(run_copy)] == [1, 2, 3]


def test_crop_training_records_its_geometry_and_inference_uses_the_whole_photo_size(synth_dir, tmp_path):
    from maskingnet.inference import Predictor

    out = tmp_path / "crops"
    settings = {**TINY_SETTINGS, "size": (96, 64)}
    train(TrainConfig(data=str(synth_dir), out=str(out), epochs=1, max_steps=1, crop=(48, 48), **settings))
    best = out / "checkpoints" / "best.safetensors"
    meta = load_model(best).meta
    assert meta["input_size"] == [96, 64] and meta["train_crop"] == [48, 48]
    predictor = Predictor(best, precision="fp32")
    assert predictor.size == (96, 64)
    assert predictor.predict(next((synth_dir / "train").glob("*.jpg"))).shape == (64, 96)


def test_scale_sets_the_training_size_from_the_photos(synth_dir, tmp_path):
    out = tmp_path / "scaled"
    settings = {**TINY_SETTINGS, "size": (1, 1)}
    train(TrainConfig(data=str(synth_dir), out=str(out), epochs=1, max_steps=1, scale=0.5, **settings))
    assert load_model(out / "checkpoints" / "best.safetensors").meta["input_size"] == [48, 32]


def test_a_crop_larger_than_the_scaled_photo_is_refused(synth_dir, tmp_path):
    config = TrainConfig(
        data=str(synth_dir), out=str(tmp_path / "x"), epochs=1, crop=(200, 200), **TINY_SETTINGS
    )
    with pytest.raises(TrainError, match="crop 200x200 is larger"):
        train(config)


def test_a_run_starts_with_a_line_naming_device_precision_images_and_parameters(synth_dir, tmp_path, capsys):
    out = tmp_path / "start-line"
    train(TrainConfig(data=str(synth_dir), out=str(out), epochs=1, max_steps=1, **TINY_SETTINGS))
    record = json.loads((out / "config.json").read_text())
    first = capsys.readouterr().err.splitlines()[0]
    images = record["images"]
    expected = (
        f"training maskingnet ({record['params']:,} parameters) on cpu, {record['precision']}: "
        f"{images['train']} train / {images['val']} val images at 64x64, batch 4"
    )
    assert first == expected
