"""ModelSettings: the one object that carries the options for running a model, from the CLI to a Predictor."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from typer.testing import CliRunner

from maskingnet.cli import MODEL_GROUP, app
from maskingnet.inference import ModelSettings, Predictor
from maskingnet.inference.fingerprint import file_sha256
from maskingnet.models import create_model, save_model
from maskingnet.predict import PredictConfig
from maskingnet.serve import ServeConfig
from maskingnet.submit import SubmitConfig


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("settings") / "tiny.safetensors"
    return save_model(create_model("maskingnet", width=0.125), path, meta={"input_size": [64, 48]})


def test_as_dict_is_the_fingerprint_input_outputs_already_record(checkpoint):
    settings = ModelSettings(checkpoint, size="96x64", tta=True, guided=True)
    assert settings.as_dict() == {
        "model": "tiny.safetensors",
        "model_sha256": file_sha256(checkpoint),
        "size": [96, 64],
        "device": "auto",
        "precision": "auto",
        "backend": "auto",
        "tta": True,
        "refine": True,
        "guided": True,
        "clean": True,
    }


def test_a_bundled_name_and_its_file_are_the_same_model():
    assert ModelSettings("maskingnet-carvana").as_dict() == ModelSettings(None).as_dict()
    assert ModelSettings(None).as_dict()["model"] == "maskingnet-carvana.safetensors"


def test_size_is_parsed_once_and_bad_sizes_are_refused():
    assert ModelSettings(size=512).size == (512, 512)
    assert ModelSettings(size="1918x1280").size == (1918, 1280)
    with pytest.raises(ValueError, match="size"):
        ModelSettings(size="big")


def test_every_verb_config_embeds_the_settings_or_takes_a_checkpoint(checkpoint, tmp_path):
    settings = ModelSettings(checkpoint, precision="fp32")
    assert PredictConfig(settings, [tmp_path], tmp_path).model is settings
    assert SubmitConfig(checkpoint, tmp_path, tmp_path / "s.csv").model == ModelSettings(checkpoint)
    served = ServeConfig(settings, api_key="k")
    assert ServeConfig.from_json(served.to_json()).model == settings


def test_a_predictor_built_from_settings_runs_them(checkpoint):
    settings = ModelSettings(checkpoint, size=(96, 64), precision="fp32", tta=True, refine=False, clean=False)
    predictor = Predictor.from_settings(settings)
    assert predictor.settings is settings
    assert predictor.size == (96, 64) and predictor.tta and predictor.post is None
    same = Predictor(checkpoint, precision="fp32", size=(96, 64), tta=True, refine=False, clean=False)
    assert same.settings == settings


def test_the_cli_group_is_the_settings_fields():
    fields = {field.name for field in dataclasses.fields(ModelSettings)} - {"checkpoint"}
    assert set(MODEL_GROUP) == fields | {"model"}


def test_the_cli_fills_the_settings_from_its_options(checkpoint, tmp_path, monkeypatch):
    import maskingnet.predict as predict_module

    seen = []
    monkeypatch.setattr(predict_module, "predict_files", lambda config: seen.append(config) or _Nothing())
    arguments = ["predict", str(tmp_path), "--out", str(tmp_path / "out"), "-m", str(checkpoint)]
    options = ["--size", "96x64", "--precision", "fp32", "--tta", "--no-refine", "--guided", "--no-clean"]
    result = CliRunner().invoke(app, arguments + options)
    assert result.exit_code == 0, result.output
    assert seen[0].model == ModelSettings(
        checkpoint, size=(96, 64), precision="fp32", tta=True, refine=False, guided=True, clean=False
    )


class _Nothing:
    done = failed = skipped = 0
    seconds = images_per_second = 0.0
