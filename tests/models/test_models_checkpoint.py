"""Model files: safetensors round trip with config and meta; pickles are refused."""

from __future__ import annotations

import pytest
import torch

from maskingnet.models import CheckpointError, create_model, load_model, save_model


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
