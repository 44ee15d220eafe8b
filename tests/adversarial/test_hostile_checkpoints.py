"""Hostile model files: a header that asks for more than its tensors hold, or for absurd input sizes, is
refused with one line before anything of that size is built."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import peak_rss_growth_mb
from safetensors import safe_open
from safetensors.torch import save_file

from maskingnet.models import CheckpointError, create_model, load_model, save_model
from maskingnet.models.checkpoint import CONFIG_KEY, META_KEY, attach_refiner, load_refiner, read_header
from maskingnet.models.refiner import REFINER_KEY, Refiner, RefinerConfig
from maskingnet.models.spec import SPEC_KEY


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("hostile") / "tiny.safetensors"
    return save_model(create_model("maskingnet", width=0.125), path, meta={"input_size": [64, 48]})


def rewrite(source: Path, out: Path, edit_metadata=None, edit_tensors=None) -> Path:
    """A copy of ``source`` with its string metadata and/or tensors edited."""
    with safe_open(str(source), framework="pt") as handle:
        metadata = dict(handle.metadata())
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    if edit_metadata:
        edit_metadata(metadata)
    if edit_tensors:
        edit_tensors(tensors)
    save_file(tensors, str(out), metadata=metadata)
    return out


def with_config(**changes):
    def edit(metadata: dict[str, str]) -> None:
        config = json.loads(metadata[CONFIG_KEY])
        config.update(changes)
        metadata[CONFIG_KEY] = json.dumps(config)

    return edit


def refused_in_one_line(path: Path, match: str) -> str:
    with pytest.raises(CheckpointError, match=match) as caught:
        load_model(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and "\n" not in message
    return message


def test_a_wider_config_than_the_tensors_is_refused_before_the_network_is_built(tiny, tmp_path):
    path = rewrite(tiny, tmp_path / "wide.safetensors", with_config(width=4))
    try:
        _, grown = peak_rss_growth_mb(lambda: refused_in_one_line(path, "do not fit its config"))
    except OSError:
        pytest.skip("no /proc/self/clear_refs to reset the peak RSS")
    assert grown < 200  # the width-4 network itself would take 2.3 GB


def test_a_config_asking_for_a_147_gb_network_is_one_line(tiny, tmp_path):
    path = rewrite(tiny, tmp_path / "huge.safetensors", with_config(width=1000))
    refused_in_one_line(path, "width 1000")


def test_a_config_with_thousands_of_layers_is_refused_before_building_them(tiny, tmp_path):
    deep = [[64] * 4000] + [[64]] * 4
    path = rewrite(tiny, tmp_path / "deep.safetensors", with_config(encoder=deep))
    refused_in_one_line(path, "unusable model config")


def test_tensors_of_the_wrong_dtype_are_refused(tiny, tmp_path):
    def to_double(tensors):
        for key, value in tensors.items():
            tensors[key] = value.double() if value.is_floating_point() else value

    path = rewrite(tiny, tmp_path / "double.safetensors", edit_tensors=to_double)
    refused_in_one_line(path, "wrong dtype")


@pytest.mark.parametrize("where", ["meta", "spec"])
def test_an_input_size_of_100000_squared_is_refused(tiny, tmp_path, where):
    def huge(metadata):
        if where == "meta":
            metadata.pop(SPEC_KEY)
            metadata[META_KEY] = json.dumps({"input_size": [100_000, 100_000]})
        else:
            spec = json.loads(metadata[SPEC_KEY])
            spec["size"] = [100_000, 100_000]
            metadata[SPEC_KEY] = json.dumps(spec)

    path = rewrite(tiny, tmp_path / f"{where}.safetensors", huge)
    refused_in_one_line(path, "input size")


@pytest.mark.parametrize("size", [[0, 64], [64, -1], ["a", 64], [64], [1.5, 64], [8193, 64], [8192, 8192]])
def test_input_sizes_out_of_range_are_refused(tiny, tmp_path, size):
    def edit(metadata):
        spec = json.loads(metadata[SPEC_KEY])
        spec["size"] = size
        metadata[SPEC_KEY] = json.dumps(spec)

    refused_in_one_line(rewrite(tiny, tmp_path / "bad.safetensors", edit), "input spec")


def test_predict_with_a_huge_input_size_says_so_in_one_line(tiny, tmp_path):
    from typer.testing import CliRunner

    from maskingnet.cli import app

    def huge(metadata):
        metadata.pop(SPEC_KEY)
        metadata[META_KEY] = json.dumps({"input_size": [100_000, 100_000]})

    path = rewrite(tiny, tmp_path / "huge.safetensors", huge)
    photo = tmp_path / "car.png"
    photo.write_bytes(_small_png())
    command = ["predict", "-m", str(path), str(photo), "--out", str(tmp_path / "out"), "--no-progress"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1 and "input size" in result.output


def _small_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (90, 90, 90)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture()
def with_refiner(tiny, tmp_path) -> Path:
    refiner = Refiner(RefinerConfig(channels=4))
    torch.nn.init.normal_(refiner.head.weight)
    return attach_refiner(tiny, refiner, tmp_path / "refined.safetensors")


def test_the_network_ignores_the_refiner_tensors_and_the_refiner_loads_beside_it(with_refiner, tiny):
    loaded = load_model(with_refiner)
    assert loaded.state_dict().keys() == load_model(tiny).state_dict().keys()
    refiner = load_refiner(with_refiner)
    assert refiner is not None and refiner.config.channels == 4
    assert not any(tensor.is_meta for tensor in refiner.state_dict().values())


def test_refiner_settings_wider_than_its_tensors_are_refused(with_refiner, tmp_path):
    def wider(metadata):
        metadata[REFINER_KEY] = RefinerConfig(channels=32).to_json()

    path = rewrite(with_refiner, tmp_path / "wide.safetensors", wider)
    with pytest.raises(CheckpointError, match="refiner weights do not fit its settings"):
        load_refiner(path)
    assert load_model(path) is not None  # the network itself is fine


def test_refiner_tensors_of_the_wrong_shape_are_refused(with_refiner, tmp_path):
    def squash(tensors):
        tensors["refiner.head.weight"] = torch.zeros(1, 1, 1, 1)

    path = rewrite(with_refiner, tmp_path / "squashed.safetensors", edit_tensors=squash)
    with pytest.raises(CheckpointError, match="wrong shape: head.weight"):
        load_refiner(path)
    assert read_header(path)[REFINER_KEY]
