"""maskingnet.bench.ablation: a tiny run writes the thesis's table, JSON and chart; re-runs reuse finished
rows."""

from __future__ import annotations

import json

import pytest

from maskingnet.bench.ablation import AblationConfig, ordering, run_ablation


@pytest.fixture(scope="module")
def tiny_ablation(tmp_path_factory, synth_dir):
    out = tmp_path_factory.mktemp("ablation")
    config = AblationConfig(
        data=synth_dir,
        out=out,
        models=("unet", "maskingnet"),
        epochs=1,
        max_steps=1,
        size=(64, 32),
        width=0.125,
        batch_size=2,
        workers=0,
        timing_repeats=1,
        device="cpu",
        progress=False,
    )
    result = run_ablation(config, say=lambda line: None)
    return config, result


def test_ablation_rows_have_every_column(tiny_ablation):
    _config, result = tiny_ablation
    assert [row["name"] for row in result["rows"]] == ["unet", "maskingnet"]
    for row in result["rows"]:
        assert 0.0 <= row["dsc"] <= 1.0 and row["one_minus_dsc"] == pytest.approx(1 - row["dsc"])
        assert row["params"] > 0 and row["train_ms_per_image"] > 0 and row["test_ms_per_image"] > 0
    unet, maskingnet = result["rows"]
    assert not unet["pool_indices"] and maskingnet["pool_indices"] and maskingnet["dilated"]
    assert maskingnet["coords"] == "mid" and unet["coords"] == "none"


def test_ablation_writes_markdown_json_and_chart(tiny_ablation):
    config, _result = tiny_ablation
    table = (config.out / "ablation.md").read_text()
    assert "| Model | DSC (val) | 1-DSC |" in table and "| MaskingNet |" in table
    assert "Ordering in the thesis: MaskingNet > U-Net." in table
    assert json.loads((config.out / "ablation.json").read_text())["settings"]["width"] == 0.125
    assert (config.out / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ablation_rerun_reuses_finished_networks(tiny_ablation, monkeypatch):
    config, result = tiny_ablation
    import maskingnet.train

    def no_training(_config):
        raise AssertionError("a finished network was trained again")

    monkeypatch.setattr(maskingnet.train, "train", no_training)
    again = run_ablation(config, say=lambda line: None)
    timing = ("train_ms_per_image", "test_ms_per_image")

    def scores(rows):
        return [{key: value for key, value in row.items() if key not in timing} for row in rows]

    assert scores(again["rows"]) == scores(result["rows"])


def test_ablation_rejects_unknown_networks(tmp_path):
    with pytest.raises(ValueError, match="unknown models: vgg"):
        AblationConfig(data=tmp_path, models=("unet", "vgg"))


def test_ordering_is_best_dice_first():
    rows = [{"label": "A", "dsc": 0.9}, {"label": "B", "dsc": 0.95}, {"label": "C", "dsc": 0.5}]
    assert ordering(rows, "dsc") == ["B", "A", "C"]
