"""ONNX export: every architecture exports with dynamic shapes and ONNX Runtime matches PyTorch fp32."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from maskingnet.cli import app
from maskingnet.export import (
    CLASS_NAMES,
    INPUT_NAMES,
    OUTPUT_NAME,
    ExportError,
    export_onnx,
    onnx_input_size,
    read_metadata,
)
from maskingnet.inference import OnnxBackend, whole_photo_coords
from maskingnet.models import create_model, list_models, load_model, save_model

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# Two sizes per model: the dynamic graph must serve both (neither is a multiple of the 32-pixel stride).
PARITY_SIZES = [(96, 64), (120, 82)]
TRAINED_SIZE = [96, 64]


def real_photos(root, count: int, size: tuple[int, int]) -> torch.Tensor:
    """``count`` real Carvana photos (different cars) resized to ``size`` and ImageNet-normalised."""
    paths = sorted((root / "train").glob("*_01.jpg"))[:count]
    arrays = []
    for path in paths:
        with Image.open(path) as image:
            small = np.asarray(image.convert("RGB").resize(size, Image.Resampling.BILINEAR), np.float32)
        arrays.append(((small / 255.0 - MEAN) / STD).transpose(2, 0, 1))
    return torch.from_numpy(np.stack(arrays))


@pytest.fixture(scope="module", params=list_models())
def exported(request, tmp_path_factory):
    """(name, checkpoint, onnx path, export result) for one architecture at width 0.125, exported once."""
    name = request.param
    folder = tmp_path_factory.mktemp(f"export-{name}")
    torch.manual_seed(0)
    checkpoint = save_model(
        create_model(name, width=0.125),
        folder / f"{name}.safetensors",
        meta={"input_size": TRAINED_SIZE, "epoch": 3},
    )
    result = export_onnx(checkpoint, folder / f"{name}.onnx")
    return name, checkpoint, folder / f"{name}.onnx", result


def torch_probs(checkpoint, images: torch.Tensor, coords: torch.Tensor | None) -> torch.Tensor:
    model = load_model(checkpoint)
    with torch.no_grad():
        return torch.softmax(model(images, coords), dim=1)[:, 1]


@pytest.mark.parametrize("size", PARITY_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_onnxruntime_matches_pytorch_fp32_on_real_photos(exported, real_sample, size):
    _, checkpoint, path, _ = exported
    images = real_photos(real_sample, 3, size)
    expected = torch_probs(checkpoint, images, None)
    got = OnnxBackend(path)(images)
    assert got.shape == expected.shape
    assert float((got - expected).abs().max()) <= 1e-4
    assert torch.equal(got > 0.5, expected > 0.5)


def test_explicit_coords_give_the_same_probabilities_as_torch(exported, real_sample):
    _, checkpoint, path, _ = exported
    images = real_photos(real_sample, 2, (96, 64))
    coords = whole_photo_coords(2, 64, 96) * 0.5 + 0.1  # maps of a crop, not of the whole input
    expected = torch_probs(checkpoint, images, coords)
    got = OnnxBackend(path)(images, coords)
    assert float((got - expected).abs().max()) <= 1e-4


def test_export_is_dynamic_opset_18_and_passes_the_checker(exported):
    _, _, path, result = exported
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    image = model.graph.input[0].type.tensor_type.shape.dim
    assert result.dynamic and result.opset == 18
    assert [d.HasField("dim_param") for d in image] == [True, False, True, True]


def test_graph_takes_image_and_coords_and_outputs_probability(exported):
    _, _, path, _ = exported
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == list(INPUT_NAMES)
    assert [o.name for o in model.graph.output] == [OUTPUT_NAME]


def test_metadata_carries_config_meta_and_class_names(exported):
    name, checkpoint, path, _ = exported
    metadata = read_metadata(path)
    assert metadata["config"] == load_model(checkpoint).config.to_dict()
    assert metadata["meta"]["epoch"] == 3
    assert metadata["class_names"] == list(CLASS_NAMES)
    assert metadata["config"]["name"] == name


def test_backend_contract_attributes(exported):
    name, _, path, _ = exported
    backend = OnnxBackend(path)
    assert backend.config.name == name
    assert backend.input_size == tuple(TRAINED_SIZE)
    assert backend.meta["epoch"] == 3
    assert (str(backend.device), backend.precision) == ("cpu", "fp32")


def test_backend_output_is_float32_cpu_tensor_in_unit_range(exported):
    _, _, path, _ = exported
    probs = OnnxBackend(path)(torch.zeros(1, 3, 40, 40))
    assert probs.dtype == torch.float32 and probs.shape == (1, 40, 40)
    assert float(probs.min()) >= 0.0 and float(probs.max()) <= 1.0


def test_opset_below_18_is_refused_with_a_reason(tmp_path):
    with pytest.raises(ExportError, match="opset 17"):
        export_onnx(tmp_path / "never-read.safetensors", tmp_path / "m.onnx", opset=17)


@pytest.mark.parametrize(
    ("text", "size"), [("dynamic", None), (None, None), ("64", (64, 64)), ("96x64", (96, 64))]
)
def test_onnx_input_size(text, size):
    assert onnx_input_size(text) == size


def test_onnx_input_size_rejects_garbage():
    with pytest.raises(ValueError, match="WxH"):
        onnx_input_size("big")


def test_cli_export_fixed_size_gives_a_static_graph(tmp_path):
    checkpoint = save_model(create_model("unet", width=0.125), tmp_path / "unet.safetensors")
    out = tmp_path / "unet-64x48.onnx"
    result = CliRunner().invoke(app, ["export", "-m", str(checkpoint), "--out", str(out), "--size", "64x48"])
    assert result.exit_code == 0, result.output
    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[1:]] == [3, 48, 64]
    assert OnnxBackend(out).input_size == (64, 48)


def test_cli_export_of_a_missing_checkpoint_fails_with_one_line(tmp_path):
    missing = tmp_path / "missing.safetensors"
    result = CliRunner().invoke(app, ["export", "-m", str(missing), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 1
    assert str(missing) in result.output
    assert not (tmp_path / "m.onnx").exists()


def test_metadata_json_is_plain_strings_for_other_runtimes(exported):
    _, _, path, _ = exported
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["class_names"]) == ["background", "car"]
    assert "probability" in props["outputs"]


def predict_masks(checkpoint, photos, out, backend: str) -> dict[str, np.ndarray]:
    args = ["predict", "-m", str(checkpoint), *map(str, photos), "--out", str(out), "--save", "mask"]
    result = CliRunner().invoke(app, [*args, "--backend", backend, "--precision", "fp32", "--no-progress"])
    assert result.exit_code == 0, result.output
    return {p.name: np.asarray(Image.open(p)) > 0 for p in sorted(out.glob("*_mask.png"))}


@pytest.mark.parametrize("exported", ["maskingnet"], indirect=True)
def test_predict_backend_onnxruntime_gives_the_torch_masks(exported, real_sample, tmp_path):
    """Full-resolution masks agree except where torch's probability ties the threshold within fp32 noise."""
    from maskingnet.predict import Predictor

    _, checkpoint, path, _ = exported
    photos = sorted((real_sample / "train").glob("*_05.jpg"))[:2]
    from_onnx = predict_masks(path, photos, tmp_path / "onnx", "onnxruntime")
    from_torch = predict_masks(checkpoint, photos, tmp_path / "torch", "torch")
    assert sorted(from_onnx) == sorted(from_torch) and len(from_onnx) == 2
    torch_predictor = Predictor(checkpoint, backend="torch", precision="fp32")
    for photo in photos:
        name = f"{photo.stem}_mask.png"
        differ = from_onnx[name] != from_torch[name]
        ties = np.abs(torch_predictor.predict(photo) - 0.5) <= 1e-4
        assert differ.mean() < 1e-5
        assert not (differ & ~ties).any()


def test_backend_given_a_checkpoint_exports_it_first(tmp_path):
    torch.manual_seed(1)
    model = create_model("unet", width=0.125)
    checkpoint = save_model(model, tmp_path / "unet.safetensors", meta={"input_size": [64, 48]})
    backend = OnnxBackend(checkpoint)
    images = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        expected = torch.softmax(model.eval()(images), dim=1)[:, 1]
    assert backend.path.suffix == ".onnx" and backend.input_size == (64, 48)
    assert float((backend(images) - expected).abs().max()) <= 1e-4


@pytest.fixture
def static_only_exporter(monkeypatch):
    """An exporter that cannot make height and width dynamic (as for a graph with data-dependent shapes)."""
    import maskingnet.models.onnx as onnx_module

    real_trace = onnx_module._trace

    def static_only(head, size, opset, dynamic_hw):
        if dynamic_hw:
            raise RuntimeError("data-dependent shape")
        return real_trace(head, size, opset, dynamic_hw)

    monkeypatch.setattr(onnx_module, "_trace", static_only)


def test_dynamic_export_falls_back_to_the_checkpoint_size_when_the_graph_cannot_be_dynamic(
    tmp_path, static_only_exporter
):
    checkpoint = save_model(
        create_model("unet", width=0.125), tmp_path / "u.safetensors", meta={"input_size": [64, 48]}
    )
    result = export_onnx(checkpoint, tmp_path / "u.onnx")
    assert (result.dynamic, result.input_size) == (False, (64, 48))
    assert "fixed at (64, 48)" in result.notes[0]


def test_the_fixed_size_fallback_is_the_input_specs_size(tmp_path, static_only_exporter):
    from maskingnet.models.onnx import export_model
    from maskingnet.models.spec import InputSpec

    model = create_model("unet", width=0.125)
    model.meta, model.spec = {}, InputSpec(size=(64, 48))
    result = export_model(model, tmp_path / "u.onnx")
    assert (result.dynamic, result.input_size) == (False, (64, 48))
    assert read_metadata(tmp_path / "u.onnx")["input_size"] == [64, 48]


def test_backend_on_a_file_that_is_not_onnx_is_a_one_line_checkpoint_error(tmp_path):
    from maskingnet.models import CheckpointError

    bad = tmp_path / "notes.onnx"
    bad.write_text("not a model")
    with pytest.raises(CheckpointError, match=r"notes\.onnx: not a loadable ONNX model"):
        OnnxBackend(bad)


def test_metadata_and_backend_carry_the_input_spec(exported):
    from maskingnet.inference import load_backend

    _, checkpoint, path, _ = exported
    spec = OnnxBackend(path).spec
    assert spec.size == tuple(TRAINED_SIZE) and spec.class_names == CLASS_NAMES
    assert read_metadata(path)["spec"]["size"] == TRAINED_SIZE
    assert spec == load_backend(checkpoint, device="cpu", precision="fp32").spec


@pytest.mark.parametrize("exported", ["maskingnet"], indirect=True)
def test_evaluate_scores_an_onnx_model_like_its_checkpoint(exported, synth_dir, tmp_path):
    from maskingnet.evaluate import evaluate
    from maskingnet.inference import ModelSettings

    _, checkpoint, path, _ = exported
    options = {"split": "all", "workers": 0, "worst": 2, "progress": False}
    from_onnx = evaluate(ModelSettings(path, precision="fp32"), synth_dir, out=tmp_path / "onnx", **options)
    from_torch = evaluate(
        ModelSettings(checkpoint, precision="fp32"), synth_dir, out=tmp_path / "torch", **options
    )
    assert from_onnx["images"] == from_torch["images"] == 48
    assert from_onnx["model"] == "maskingnet" and from_onnx["params"] == from_torch["params"]
    assert from_onnx["mean_dice"] == pytest.approx(from_torch["mean_dice"], abs=1e-4)
