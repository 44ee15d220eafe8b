"""Model files whose fields ask for too much: a refiner tile of 4000 (71 s and 4.7 GB a cut-out), 1e9 or
8.5, a width of 1e6, a classifier kernel of 1e9, JSON nested 200,000 deep. Each is refused at load, in
one line, before anything of that size is built; the same fields inside an ONNX export too."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from maskingnet.models import CheckpointError, create_model, load_model, save_model
from maskingnet.models.checkpoint import CONFIG_KEY, META_KEY, attach_refiner, load_refiner
from maskingnet.models.refiner import REFINER_KEY, Refiner, RefinerConfig

NESTED = "[" * 200_000 + "]" * 200_000


@pytest.fixture(scope="module")
def refined(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("fields")
    tiny = save_model(
        create_model("maskingnet", width=0.125), folder / "tiny.safetensors", {"input_size": [64, 48]}
    )
    return attach_refiner(tiny, Refiner(RefinerConfig(channels=4)), folder / "refined.safetensors")


def rewrite(source: Path, out: Path, key: str, edit) -> Path:
    with safe_open(str(source), framework="pt") as handle:
        metadata = dict(handle.metadata())
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    metadata[key] = edit(metadata[key])
    save_file(tensors, str(out), metadata=metadata)
    return out


def changed(**changes):
    return lambda text: json.dumps({**json.loads(text), **changes})


def one_line_refusal(load, path: Path, match: str) -> str:
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match=match) as caught:
        load(path)
    assert time.perf_counter() - started < 2
    message = str(caught.value)
    assert message.startswith(str(path)) and "\n" not in message and len(message) < 400
    return message


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"tile": 4000}, "tile 4000"),
        ({"tile": 20000}, "tile 20000"),
        ({"tile": 1e9}, "tile 1000000000.0"),
        ({"tile": 8.5}, "tile 8.5"),
        ({"tile": "64"}, "tile '64'"),
        ({"margin": 1000}, "margin 1000"),
        ({"tile": 16, "margin": 64}, "margin 64: at most the tile"),
        ({"channels": True}, "channels True"),
        ({"scale": float("nan")}, "scale nan"),
    ],
)
def test_refiner_settings_out_of_range_are_refused_at_load(refined, tmp_path, changes, named):
    path = rewrite(refined, tmp_path / "bad.safetensors", REFINER_KEY, changed(**changes))
    message = one_line_refusal(load_refiner, path, "unusable refiner settings")
    assert f"refiner {named}" in message


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"width": 1e6}, "width 1000000.0"),
        ({"width": -1}, "width -1"),
        ({"classifier_kernel": 1e9}, "classifier_kernel 1000000000.0"),
        ({"in_channels": 3.5}, "in_channels 3.5"),
        ({"dilation": [1, 1, 1, 1, 10**9]}, "dilation[4]"),
        ({"encoder": [[10**7, 64], [128]]}, "encoder[0][0]"),
        ({"name": {"a": 1}}, "name"),
    ],
)
def test_config_fields_out_of_range_are_refused_at_load(refined, tmp_path, changes, named):
    path = rewrite(refined, tmp_path / "bad.safetensors", CONFIG_KEY, changed(**changes))
    assert named in one_line_refusal(load_model, path, "unusable model config")


@pytest.mark.parametrize("key", [CONFIG_KEY, META_KEY, REFINER_KEY])
def test_json_nested_200000_deep_is_one_line(refined, tmp_path, key):
    path = rewrite(refined, tmp_path / "nested.safetensors", key, lambda _text: NESTED)
    load = load_refiner if key == REFINER_KEY else load_model
    one_line_refusal(load, path, "nested more than")


def test_the_refiner_inside_an_onnx_export_is_checked_the_same(refined, tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from maskingnet.export import export_onnx
    from maskingnet.inference.backends import OnnxBackend

    exported = export_onnx(refined, tmp_path / "refined.onnx").path
    proto = onnx.load(str(exported))
    for prop in proto.metadata_props:
        if prop.key == REFINER_KEY:
            prop.value = json.dumps({**json.loads(prop.value), "tile": 4000})
        if prop.key == CONFIG_KEY:
            prop.value = json.dumps({**json.loads(prop.value), "classifier_kernel": 1e9})
    onnx.save(proto, str(tmp_path / "hostile.onnx"))
    message = one_line_refusal(OnnxBackend, tmp_path / "hostile.onnx", "unusable")
    assert "classifier_kernel 1000000000.0" in message or "tile 4000" in message


def test_cutout_with_a_tile_of_1e9_prints_one_line_and_fails(refined, tmp_path):
    from PIL import Image

    path = rewrite(refined, tmp_path / "bad.safetensors", REFINER_KEY, changed(tile=1e9))
    photo = tmp_path / "car.png"
    Image.new("RGB", (64, 48), (120, 120, 120)).save(photo)
    command = [
        sys.executable,
        "-m",
        "maskingnet",
        "cutout",
        "-m",
        str(path),
        str(photo),
        "-o",
        str(tmp_path / "o.png"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1 and "tile" in result.stderr
    assert not (tmp_path / "o.png").exists()
