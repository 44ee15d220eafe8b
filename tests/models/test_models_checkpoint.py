"""Model files: safetensors round trip with config and meta; pickles are refused."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from maskingnet.models import CheckpointError, create_model, load_model, save_model
from maskingnet.models.checkpoint import CONFIG_KEY


@pytest.fixture()
def tiny_model():
    torch.manual_seed(0)
    model = create_model("maskingnet", width=0.125)
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 64))  # moves the BatchNorm running statistics off their defaults
    return model.eval()


def test_round_trip_gives_identical_outputs(tiny_model, tmp_path):
    save_model(tiny_model, tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors")
    image = torch.randn(1, 3, 50, 70)
    with torch.no_grad():
        assert torch.equal(tiny_model(image), loaded(image))


def test_loaded_model_is_in_eval_mode_with_config_and_meta(tiny_model, tmp_path):
    save_model(tiny_model, tmp_path / "m.safetensors", meta={"epoch": 7, "input_size": [512, 512]})
    loaded = load_model(tmp_path / "m.safetensors")
    assert not loaded.training
    assert loaded.config == tiny_model.config
    assert loaded.meta == {"epoch": 7, "input_size": [512, 512]}


def test_torch_save_file_renamed_safetensors_is_refused(tiny_model, tmp_path):
    path = tmp_path / "pickled.safetensors"
    torch.save(tiny_model.state_dict(), path)
    with pytest.raises(CheckpointError, match="pickle"):
        load_model(path)


def test_truncated_file_is_refused(tiny_model, tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(tiny_model, path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError):
        load_model(path)


def test_save_leaves_no_temporary_files(tiny_model, tmp_path):
    save_model(tiny_model, tmp_path / "m.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_compiled_model_is_saved_with_clean_parameter_names(tiny_model, tmp_path):
    compiled = torch.compile(tiny_model, backend="eager")
    save_model(compiled, tmp_path / "m.safetensors", meta={"data": tmp_path})
    loaded = load_model(tmp_path / "m.safetensors")
    assert loaded.meta == {"data": str(tmp_path)}
    assert loaded.state_dict().keys() == tiny_model.state_dict().keys()


def test_weights_that_do_not_fit_the_stored_config_are_refused(tmp_path):
    model = create_model("arc1", width=0.125)
    state = {k: v.contiguous() for k, v in create_model("segnet", width=0.125).state_dict().items()}
    save_file(
        state,
        str(tmp_path / "m.safetensors"),
        metadata={CONFIG_KEY: json.dumps(model.config.to_dict())},
    )
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(tmp_path / "m.safetensors")


def test_legacy_pickle_file_is_refused(tmp_path):
    import pickle

    path = tmp_path / "legacy.safetensors"
    path.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}, protocol=4))
    with pytest.raises(CheckpointError, match="pickle"):
        load_model(path)


def test_safetensors_whose_header_length_starts_with_0x80_loads(tiny_model, tmp_path):
    from safetensors import safe_open

    path = tmp_path / "m.safetensors"
    save_model(tiny_model, path, meta={"input_size": [64, 32]})
    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata())
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    for pad in range(512):
        metadata["pad"] = " " * pad
        save_file(tensors, str(path), metadata=metadata)
        if path.read_bytes()[:1] == b"\x80":
            break
    assert path.read_bytes()[:1] == b"\x80"
    assert load_model(path).meta == {"input_size": [64, 32]}
