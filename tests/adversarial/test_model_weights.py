"""Model files whose weights or graph are the attack: NaN or infinite weights (every answer NaN: empty
masks, transparent cut-outs that look like results) and an ONNX graph that makes a huge tensor from a
constant shape. Both are refused when the file is opened, in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from maskingnet.models import CheckpointError, create_model, load_model, save_model
from maskingnet.models.checkpoint import attach_refiner, load_refiner
from maskingnet.models.refiner import Refiner, RefinerConfig


@pytest.fixture(scope="module")
def refined(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("weights")
    tiny = save_model(
        create_model("maskingnet", width=0.125), folder / "tiny.safetensors", {"input_size": [64, 48]}
    )
    return attach_refiner(tiny, Refiner(RefinerConfig(channels=4)), folder / "refined.safetensors")


def poisoned(source: Path, out: Path, name_part: str, value: float) -> Path:
    with safe_open(str(source), framework="pt") as handle:
        metadata = dict(handle.metadata())
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    name = next(key for key in sorted(tensors) if name_part in key and tensors[key].is_floating_point())
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = value
    save_file(tensors, str(out), metadata=metadata)
    return out


def one_line(error: pytest.ExceptionInfo, path: Path) -> str:
    message = str(error.value)
    assert message.startswith(str(path)) and "\n" not in message
    return message


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_network_weight_that_is_not_a_number_is_refused(refined, tmp_path, value):
    path = poisoned(refined, tmp_path / "bad.safetensors", "encoder", value)
    with pytest.raises(CheckpointError, match="NaN or infinite weights") as caught:
        load_model(path)
    assert "encoder" in one_line(caught, path)


def test_a_refiner_weight_that_is_not_a_number_is_refused(refined, tmp_path):
    path = poisoned(refined, tmp_path / "bad.safetensors", "refiner.", float("nan"))
    assert load_model(path) is not None  # the network's own weights are fine
    with pytest.raises(CheckpointError, match="NaN or infinite weights") as caught:
        load_refiner(path)
    assert "refiner." in one_line(caught, path)


def test_cutout_with_nan_weights_fails_in_one_line_and_writes_nothing(refined, tmp_path):
    from PIL import Image

    path = poisoned(refined, tmp_path / "bad.safetensors", "decoder", float("nan"))
    photo = tmp_path / "car.png"
    Image.new("RGB", (64, 48), (120, 120, 120)).save(photo)
    out = tmp_path / "car_cutout.png"
    command = [sys.executable, "-m", "maskingnet", "cutout", "-m", str(path), str(photo), "-o", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "NaN or infinite" in result.stderr
    assert not out.exists()


def maskingnet_shaped_graph(
    path: Path, constant_side: int = 0, nan_weight: bool = False, times_input: int = 0
) -> Path:
    """A graph with an export's inputs and output (image, coords -> probability): its probability is the
    image's first channel plus the sum of a ``constant_side``-square tensor of zeros made by
    ConstantOfShape, or times a weight that is NaN."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    inputs = [
        helper.make_tensor_value_info("image", TensorProto.FLOAT, ["b", 3, "h", "w"]),
        helper.make_tensor_value_info("coords", TensorProto.FLOAT, ["b", 2, "h", "w"]),
    ]
    output = helper.make_tensor_value_info("probability", TensorProto.FLOAT, None)
    weight = np.array([np.nan if nan_weight else 1.0], np.float32)
    initializers = [
        numpy_helper.from_array(np.array([constant_side, constant_side], np.int64), "shape"),
        numpy_helper.from_array(weight, "weight"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
    ]
    zeros = helper.make_tensor("zero_value", TensorProto.FLOAT, [1], [0.0])
    shape = "shape"
    nodes = []
    if times_input:  # the shape is the photo's height and width, times_input times each
        initializers += [
            numpy_helper.from_array(np.array([2], np.int64), "from"),
            numpy_helper.from_array(np.array([4], np.int64), "to"),
            numpy_helper.from_array(np.array([times_input], np.int64), "times"),
        ]
        nodes += [
            helper.make_node("Shape", ["image"], ["image_shape"]),
            helper.make_node("Slice", ["image_shape", "from", "to"], ["height_width"]),
            helper.make_node("Mul", ["height_width", "times"], ["input_shape"]),
        ]
        shape = "input_shape"
    nodes += [
        helper.make_node("ConstantOfShape", [shape], ["big"], value=zeros),
        helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
        helper.make_node("Gather", ["image", "zero"], ["first"], axis=1),
        helper.make_node("Mul", ["first", "weight"], ["scaled"]),
        helper.make_node("Add", ["scaled", "total"], ["probability"]),
    ]
    graph = helper.make_graph(nodes, "hostile", inputs, [output], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def test_an_onnx_graph_making_a_1_6_gb_constant_is_refused_before_it_runs(tmp_path):
    pytest.importorskip("onnxruntime")
    from maskingnet.inference import OnnxBackend

    path = maskingnet_shaped_graph(tmp_path / "constant.onnx", constant_side=20_000)
    with pytest.raises(CheckpointError, match="makes a tensor of 1,526 MB") as caught:
        OnnxBackend(path)
    one_line(caught, path)


def test_an_onnx_graph_with_nan_weights_is_refused(tmp_path):
    pytest.importorskip("onnxruntime")
    from maskingnet.inference import OnnxBackend

    path = maskingnet_shaped_graph(tmp_path / "nan.onnx", constant_side=2, nan_weight=True)
    with pytest.raises(CheckpointError, match="NaN or infinite weights") as caught:
        OnnxBackend(path)
    one_line(caught, path)


def test_an_onnx_graph_making_a_tensor_from_the_photo_s_size_times_a_thousand_is_refused(tmp_path):
    pytest.importorskip("onnxruntime")
    from maskingnet.inference import OnnxBackend

    path = maskingnet_shaped_graph(tmp_path / "scaled.onnx", constant_side=1, times_input=1000)
    with pytest.raises(CheckpointError, match="from an input of 262,144 pixels") as caught:
        OnnxBackend(path)
    one_line(caught, path)


def test_a_real_export_passes_the_graph_check(tmp_path):
    pytest.importorskip("onnx")
    from maskingnet.export import export_onnx
    from maskingnet.inference.onnx_graph import graph_problem

    model = save_model(
        create_model("unet", width=0.25), tmp_path / "unet.safetensors", {"input_size": [64, 48]}
    )
    assert graph_problem(export_onnx(model, tmp_path / "dynamic.onnx").path) is None
    assert graph_problem(export_onnx(model, tmp_path / "fixed.onnx", size=(1920, 1280)).path) is None
