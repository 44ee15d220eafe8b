"""maskingnet.bench: one tiny run writes every field of bench.json and bench.md (no timed assertions)."""

from __future__ import annotations

import json

import pytest

from maskingnet.bench.networks import add_thesis_ratios
from maskingnet.bench.pipeline import overlap_bound
from maskingnet.bench.report import run_bench
from maskingnet.bench.timing import BenchConfig, make_plan
from maskingnet.inference import ModelSettings


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory, real_sample):
    out = tmp_path_factory.mktemp("bench")
    config = BenchConfig(
        out=out,
        quick=True,
        device="cpu",
        models=("unet", "maskingnet"),
        size=32,
        batch=1,
        repeats=1,
        fast_size=64,
        width=0.125,
        data=real_sample,
        auto_checkpoint=False,
        photos=1,
        pipeline_images=1,
        peak_shapes=((16, 32, 32),),
        progress=False,
        sections=tuple(section for section in BenchConfig().sections if section != "peer"),
    )
    run_bench(config)
    return out


def _json(out) -> dict:
    return json.loads((out / "bench.json").read_text())


def test_bench_writes_machine_fields(tiny_bench):
    machine = _json(tiny_bench)["machine"]
    assert {"cpu", "cores", "torch", "device", "precision"} <= set(machine)
    assert machine["precision"]["auto"] in ("fp32", "bf16")


def test_bench_writes_model_rows_with_thesis_ratios(tiny_bench):
    rows = _json(tiny_bench)["models"]
    assert [row["name"] for row in rows] == ["unet", "maskingnet"]
    for row in rows:
        for key in ("params", "gflops", "train_ms_per_image", "test_ms_per_image"):
            assert row[key] > 0
        assert row["thesis_test_ratio_to_unet"] > 0 and row["train_ratio_to_unet"] > 0


def test_bench_writes_peak_fast_path_and_utilization(tiny_bench):
    result = _json(tiny_bench)
    assert result["peak"]["fp32"]["gflops_per_s"] > 0 and result["peak"]["bf16"]["gflops_per_s"] > 0
    fast = result["fast_path"]
    for key in ("naive_ms", "fast_ms", "speedup"):
        assert fast[key] > 0
    assert 0.0 <= fast["mask_agreement_dice"] <= 1.0 and fast["photos"] == 1
    assert result["utilization"]["fp32"] > 0 and result["utilization"]["fast"] > 0


def test_bench_writes_pipeline_and_rle(tiny_bench):
    result = _json(tiny_bench)
    pipeline = result["pipeline"]
    assert pipeline["images"] == 1 and pipeline["end_to_end_images_per_s"] > 0
    assert "overhead_pct" in pipeline and pipeline["model_only_images_per_s"] > 0
    assert result["rle"]["encode_ms"] > 0 and result["rle"]["decode_ms"] > 0


def test_bench_times_each_pipeline_stage_alone_beside_the_whole(tiny_bench):
    pipeline = _json(tiny_bench)["pipeline"]
    stages = pipeline["stage_ms_per_image"]
    assert set(stages) == {"decode", "network", "output"} and all(ms > 0 for ms in stages.values())
    assert pipeline["slowest_stage"] == max(stages, key=stages.get)
    assert pipeline["slowest_stage_fraction"] > 0
    assert set(pipeline["stage_cpu_ms_per_image"]) == set(stages)
    assert 0 < pipeline["overlap_bound"] <= 1 and pipeline["fraction_of_bound"] > 0


def test_bench_pipeline_runs_the_bundled_model_with_its_edge_stage(tiny_bench):
    pipeline = _json(tiny_bench)["pipeline"]
    assert pipeline["model"].startswith("maskingnet-carvana") and pipeline["size"] == [480, 320]
    assert pipeline["edge_stage"] == "refiner, clean-up on"


def test_overlap_bound_is_the_cores_over_the_stages_cpu_time():
    stages = {"network": {"wall": 0.2, "cpu": 0.4}, "output": {"wall": 0.1, "cpu": 0.2}}
    assert overlap_bound(stages, cores=2) == pytest.approx(2 * 0.2 / 0.6)
    assert overlap_bound(stages, cores=8) == 1.0


def test_bench_writes_the_output_stage_before_and_after(tiny_bench):
    stage = _json(tiny_bench)["output_stage"]
    assert stage["images"] == 1 and stage["size"] == [1918, 1280] and stage["max_pixel_difference"] == 0
    seconds, cpu = stage["seconds_per_photo"], stage["cpu_seconds_per_photo"]
    assert len(seconds) == len(cpu) == 8 and min(seconds.values()) > 0
    assert stage["render_soft_speedup"] > 0 and stage["cutouts_per_s_soft_after"] > 0


def test_bench_markdown_has_every_section(tiny_bench):
    text = (tiny_bench / "bench.md").read_text()
    for heading in (
        "## The six networks",
        "## Conv peak",
        "## CPU fast path",
        "## End-to-end predict",
        "## RLE",
        "## Output stage",
    ):
        assert heading in text


def test_thesis_ratios_are_relative_to_unet():
    rows = [
        {"name": "unet", "train_ms_per_image": 10.0, "test_ms_per_image": 4.0},
        {"name": "segnet", "train_ms_per_image": 20.0, "test_ms_per_image": 2.0},
    ]
    add_thesis_ratios(rows)
    assert rows[1]["train_ratio_to_unet"] == 2.0 and rows[1]["test_ratio_to_unet"] == 0.5
    assert rows[1]["thesis_test_ratio_to_unet"] == pytest.approx(30.50 / 34.42, abs=1e-3)


def test_quick_plan_on_cpu_is_smaller_than_the_full_one():
    quick, full = make_plan(BenchConfig(quick=True, device="cpu")), make_plan(BenchConfig(device="cpu"))
    assert quick.size < full.size and quick.pipeline_images < full.pipeline_images


def test_find_trained_maskingnet_picks_the_best_validation_dice(tmp_path):
    from maskingnet.bench.fastpath import find_trained_maskingnet
    from maskingnet.models import create_model, save_model

    for run, name, dice in [("a", "maskingnet", 0.91), ("b", "maskingnet", 0.97), ("c", "unet", 0.99)]:
        save_model(
            create_model(name, width=0.125),
            tmp_path / run / "checkpoints" / "best.safetensors",
            meta={"val_dice": dice},
        )
    assert find_trained_maskingnet(tmp_path) == tmp_path / "b" / "checkpoints" / "best.safetensors"


def test_default_model_section_times_the_four_pipelines_on_real_photos(real_sample):
    from maskingnet.bench.default_model import bench_default_model, default_model_markdown

    paths = sorted((real_sample / "train").glob("*.jpg"))[:1]
    section = bench_default_model(paths, say=lambda line: None, rounds=1)
    seconds = section["seconds_per_photo"]
    assert set(seconds) == {"previous", "default_plain", "default", "naive"} and min(seconds.values()) > 0
    # the ratios come from the unrounded times, the times shown are rounded to 0.1 ms
    ratio = pytest.approx(seconds["default"] / seconds["previous"], abs=0.006)
    assert section["default_vs_previous"] == ratio
    assert section["plain_vs_naive"] == pytest.approx(seconds["naive"] / seconds["default_plain"], abs=0.006)
    assert "edge stage and clean-up" in "\n".join(default_model_markdown(section))


def test_default_model_section_times_a_baseline_model_in_the_same_turns(real_sample, monkeypatch, tmp_path):
    from maskingnet.bench import default_model
    from maskingnet.models import create_model, save_model

    baseline = tmp_path / "old.safetensors"
    save_model(create_model("maskingnet", width=0.125), baseline, meta={"input_size": [64, 64]})
    timed = []

    def fake_seconds(checkpoint, paths, refine, clean, size=None):
        timed.append(checkpoint)
        return 0.2 if checkpoint == baseline else 0.3

    monkeypatch.setattr(default_model, "_seconds_per_photo", fake_seconds)
    monkeypatch.setattr(default_model, "_naive_seconds_per_photo", lambda model, paths: 0.4)
    paths = sorted((real_sample / "train").glob("*.jpg"))[:1]
    section = default_model.bench_default_model(paths, say=lambda line: None, rounds=2, baseline=baseline)
    assert timed.count(baseline) == 2  # once a round, in turns with the others
    assert section["default_vs_baseline"] == 1.5
    assert section["baseline"].startswith("old.safetensors (maskingnet width 0.125")
    markdown = "\n".join(default_model.default_model_markdown(section))
    assert "| baseline model old.safetensors" in markdown and "Default / baseline: 1.50x" in markdown


def test_the_naive_script_writes_the_masks_the_plain_pipeline_writes(real_sample, tmp_path):
    import numpy as np
    from PIL import Image

    from maskingnet.bench.default_model import naive_masks
    from maskingnet.data.metrics import dice
    from maskingnet.predict import PredictConfig, predict_files

    paths = sorted((real_sample / "train").glob("*.jpg"))[:1]
    naive_masks("maskingnet-carvana", paths, tmp_path)
    config = PredictConfig(
        model=ModelSettings("maskingnet-carvana", refine=False, clean=False, precision="fp32"),
        inputs=[str(p) for p in paths],
        out=tmp_path / "plain",
        save=("mask",),
        progress=False,
    )
    predict_files(config, lambda line: None)
    naive = np.asarray(Image.open(tmp_path / f"{paths[0].stem}_mask.png")) > 0
    plain = np.asarray(Image.open(tmp_path / "plain" / f"{paths[0].stem}_mask.png")) > 0
    assert naive.shape == plain.shape and dice(naive, plain) > 0.995


def test_bench_times_cutout_start_up_step_by_step(tiny_bench):
    section = _json(tiny_bench)["startup"]
    steps = section["steps_s"]
    assert list(steps) == ["import_cli", "import_inference", "load_model", "first_photo", "warm_photo"]
    assert all(seconds > 0 for seconds in steps.values())
    assert section["command_s"] > steps["first_photo"]
    assert "## cutout start-up" in (tiny_bench / "bench.md").read_text()


def test_bench_passes_its_baseline_model_to_the_run(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from maskingnet.bench import report
    from maskingnet.cli import app

    seen = {}

    def fake_run(config):
        seen["config"] = config
        return {"seconds": 0.0}

    monkeypatch.setattr(report, "run_bench", fake_run)
    args = ["bench", "--section", "default_model", "--out", str(tmp_path), "--baseline", "maskingnet-carvana"]
    assert CliRunner().invoke(app, args).exit_code == 0
    config = seen["config"]
    assert config.baseline.name == "maskingnet-carvana.safetensors" and config.baseline.is_file()
    assert config.extra["command"].endswith("--baseline maskingnet-carvana")
    CliRunner().invoke(app, args[:-2])
    assert seen["config"].baseline is None
