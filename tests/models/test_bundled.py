"""The model in the box: found from the package, checked, used by default by every verb."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from maskingnet.cli import app
from maskingnet.inference import Predictor
from maskingnet.models import DEFAULT_MODEL, list_bundled, load_model, read_config, resolve_model
from maskingnet.models.bundled import BUNDLED, bundled_path, file_sha256
from maskingnet.models.checkpoint import CheckpointError, load_refiner
from maskingnet.train.split import read_car_list

REPO = Path(__file__).resolve().parents[2]


def car_photo(width: int = 192, height: int = 128) -> Image.Image:
    """A grey studio with a dark rounded 'car' in the middle: enough for a shape check, not for Dice."""
    photo = np.full((height, width, 3), 225, np.uint8)
    yy, xx = np.mgrid[:height, :width]
    body = ((xx - width / 2) / (width * 0.35)) ** 2 + ((yy - height * 0.55) / (height * 0.22)) ** 2 < 1
    photo[body] = (40, 50, 70)
    return Image.fromarray(photo)


def test_every_bundled_file_matches_its_recorded_sha256():
    for bundled in list_bundled():
        path = bundled_path(bundled.name)
        assert file_sha256(path) == BUNDLED[bundled.name].sha256 and len(bundled.sha256) == 64


def test_bundled_model_is_small_enough_to_ship():
    assert bundled_path(DEFAULT_MODEL).stat().st_size <= 20 * 1024 * 1024


def test_bundled_model_loads_without_unpickling(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    model = load_model(DEFAULT_MODEL)
    assert model.config.name == "maskingnet"


def test_bundled_model_records_config_meta_and_its_training():
    config, meta = read_config(bundled_path(DEFAULT_MODEL))
    assert config.name == "maskingnet" and 0 < config.width <= 1
    assert len(meta["input_size"]) == 2 and 0.9 < meta["val_dice"] <= 1
    assert meta["epoch"] >= 1 and meta["train_crop"] is not None


def listed_cars(path: Path) -> list[str]:
    return sorted(read_car_list(f"@{path}"))


def test_bundled_model_lists_the_cars_it_trained_and_validated_on():
    _, meta = read_config(bundled_path(DEFAULT_MODEL))
    train_cars, val_cars = meta["split"]["train_cars"], meta["split"]["val_cars"]
    assert val_cars == listed_cars(REPO / "docs" / "carvana-val-cars.txt")
    assert len(train_cars) == 247 and not set(train_cars) & set(val_cars)


def test_bundled_model_saw_only_the_cars_this_project_may_train_on():
    allowed = REPO.parent / "shared" / "data" / "carvana-train-cars.txt"
    if not allowed.is_file():
        pytest.skip(f"{allowed} not found")
    _, meta = read_config(bundled_path(DEFAULT_MODEL))
    seen = set(meta["split"]["train_cars"]) | set(meta["split"]["val_cars"])
    assert seen <= set(listed_cars(allowed))


def test_a_damaged_bundled_file_is_refused(tmp_path, monkeypatch):
    from maskingnet.models import bundled

    fake = bundled.BundledModel("x", "maskingnet-carvana.safetensors", "0" * 64, "altered")
    monkeypatch.setitem(bundled.BUNDLED, "x", fake)
    with pytest.raises(CheckpointError, match="damaged"):
        bundled_path("x")


def test_an_unknown_name_says_what_is_bundled():
    with pytest.raises(CheckpointError, match=DEFAULT_MODEL):
        resolve_model("no-such-model")


def test_create_model_pretrained_gives_the_bundled_weights():
    import maskingnet

    model = maskingnet.create_model("maskingnet", pretrained=True)
    reference = load_model(DEFAULT_MODEL)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters(), strict=True))
    with pytest.raises(CheckpointError):
        maskingnet.create_model("unet", pretrained=True)


def test_predictor_with_no_argument_cuts_out_a_photo():
    import maskingnet

    cutout = maskingnet.Predictor(precision="fp32").cutout(car_photo())
    alpha = np.asarray(cutout)[:, :, 3]
    assert cutout.mode == "RGBA" and cutout.size == (192, 128)
    assert alpha[70, 96] == 255 and alpha[5, 5] == 0


def test_guided_runs_the_bundled_model_with_the_guided_filter_instead_of_its_refiner():
    default, guided = Predictor(), Predictor(guided=True)
    assert default.post.refiner is not None and guided.post.refiner is None
    photo = car_photo()
    assert not np.array_equal(default.predict(photo), guided.predict(photo))


@pytest.fixture(scope="module")
def exported_bundled(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from maskingnet.export import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "bundled.onnx"
    export_onnx(bundled_path(DEFAULT_MODEL), out, size="480x320")
    return out


@pytest.mark.parametrize("kind", ["name", "safetensors", "onnx"])
def test_predict_takes_a_bundled_name_a_checkpoint_or_an_onnx(kind, tmp_path, request):
    model = {"name": DEFAULT_MODEL, "safetensors": str(bundled_path(DEFAULT_MODEL))}.get(kind)
    if kind == "onnx":
        model = str(request.getfixturevalue("exported_bundled"))
    car_photo().save(tmp_path / "car.jpg")
    args = [
        "predict",
        str(tmp_path / "car.jpg"),
        "-m",
        model,
        "--out",
        str(tmp_path / "out"),
        "--save",
        "mask",
        "--workers",
        "0",
        "--no-progress",
        "--precision",
        "fp32",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    mask = np.asarray(Image.open(tmp_path / "out" / "car_mask.png"))
    assert mask[70, 96] > 0 and mask[5, 5] == 0


def test_onnx_export_carries_the_refiner_when_there_is_one(exported_bundled):
    from maskingnet.inference import load_backend

    own = load_refiner(bundled_path(DEFAULT_MODEL))
    carried = load_backend(exported_bundled).refiner
    assert (own is None) == (carried is None)


def test_cutout_verb_writes_a_png_from_a_path(tmp_path):
    car_photo().save(tmp_path / "car.jpg")
    result = CliRunner().invoke(app, ["cutout", str(tmp_path / "car.jpg"), "-o", str(tmp_path / "car.png")])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "car.png").mode == "RGBA"


def test_cutout_verb_reads_stdin_and_writes_stdout():
    buffer = io.BytesIO()
    car_photo().save(buffer, format="JPEG")
    result = CliRunner().invoke(app, ["cutout", "-", "-o", "-"], input=buffer.getvalue())
    assert result.exit_code == 0
    image = Image.open(io.BytesIO(result.stdout_bytes))
    assert image.format == "PNG" and image.size == (192, 128)


def test_cutout_verb_refuses_garbage_on_stdin_in_one_line():
    result = CliRunner().invoke(app, ["cutout", "-", "-o", "-"], input=b"not a photo")
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1


def test_the_bundled_edge_refiner_beats_plain_up_sampling_on_a_held_out_car(real_sample):
    """On all 80 held-out photos it gained 0.002 to 0.008 Dice over bilinear; two of them are checked here."""
    from maskingnet.data.carvana import load_mask, scan
    from maskingnet.data.io import read_image
    from maskingnet.data.metrics import dice
    from maskingnet.inference import Predictor
    from maskingnet.inference.edges import CleanUp, EdgeStage

    path = bundled_path(DEFAULT_MODEL)
    held_out = read_config(path)[1]["split"]["val_cars"][0]
    network = Predictor(DEFAULT_MODEL, precision="fp32", refine=False, clean=False)
    refined_by = {
        "bilinear": EdgeStage(None, CleanUp(enabled=False), None),
        "refiner": EdgeStage(load_refiner(path), CleanUp(enabled=False), None),
    }
    for record in [r for r in scan(real_sample).records if r.car_id == held_out][:2]:
        photo = np.asarray(read_image(record.image_path).convert("RGB"))
        item = network.prepare(str(record.image_path), need_photo=False, index=0)
        small = network.infer_prepared([item])[0]
        truth = load_mask(record)
        size = (truth.shape[1], truth.shape[0])
        scores = {name: dice(stage(small, photo, size) > 0.5, truth) for name, stage in refined_by.items()}
        assert scores["refiner"] > scores["bilinear"] + 0.001, (record.id, scores)
