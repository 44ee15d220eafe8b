"""VGG-16 initialisation from a fake torchvision-format file (random tensors, real key names and shapes)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from maskingnet.models import CheckpointError, create_model, load_vgg_weights

VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
FIRST_TEN = [
    "conv1_1",
    "conv1_2",
    "conv2_1",
    "conv2_2",
    "conv3_1",
    "conv3_2",
    "conv3_3",
    "conv4_1",
    "conv4_2",
]
FIRST_TEN.append("conv4_3")


def fake_vgg16_state(batch_norm: bool) -> dict[str, torch.Tensor]:
    """torchvision's ``vgg16`` / ``vgg16_bn`` state dict layout, filled with random numbers."""
    generator = torch.Generator().manual_seed(0)
    state: dict[str, torch.Tensor] = {}
    index, in_channels = 0, 3
    for item in VGG16_CFG:
        if item == "M":
            index += 1
            continue
        state[f"features.{index}.weight"] = torch.randn(item, in_channels, 3, 3, generator=generator)
        state[f"features.{index}.bias"] = torch.randn(item, generator=generator)
        if batch_norm:
            for key in ("weight", "bias", "running_mean"):
                state[f"features.{index + 1}.{key}"] = torch.randn(item, generator=generator)
            state[f"features.{index + 1}.running_var"] = torch.rand(item, generator=generator) + 0.5
            state[f"features.{index + 1}.num_batches_tracked"] = torch.tensor(1)
        index += 3 if batch_norm else 2
        in_channels = item
    state["classifier.0.weight"] = torch.randn(8, 8, generator=generator)
    return state


@pytest.fixture(scope="module")
def vgg16_pth(tmp_path_factory):
    path = tmp_path_factory.mktemp("vgg") / "vgg16.pth"
    state = fake_vgg16_state(batch_norm=False)
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def vgg16_bn_safetensors(tmp_path_factory):
    path = tmp_path_factory.mktemp("vgg") / "vgg16_bn.safetensors"
    state = fake_vgg16_state(batch_norm=True)
    save_file(state, str(path))
    return path, state


def loaded_vgg_names(loaded: list[str]) -> list[str]:
    return [entry.split(" -> ")[0] for entry in loaded]


def test_segnet_family_loads_the_first_ten_convs(vgg16_pth):
    loaded = load_vgg_weights(create_model("arc1"), vgg16_pth[0])
    assert loaded_vgg_names(loaded) == FIRST_TEN


def test_unet_loads_conv1_1_to_conv4_2(vgg16_pth):
    loaded = load_vgg_weights(create_model("unet"), vgg16_pth[0])
    assert loaded_vgg_names(loaded) == FIRST_TEN[:6] + ["conv4_1", "conv4_2"]


def test_conv_weights_are_copied_in_order(vgg16_pth):
    path, state = vgg16_pth
    model = create_model("segnet")
    load_vgg_weights(model, path)
    assert torch.equal(model.encoder[3][0].conv.weight, state["features.17.weight"])
    assert torch.equal(model.encoder[3][0].conv.bias, state["features.17.bias"])


def test_vgg16_bn_also_loads_batchnorm_affine_and_running_statistics(vgg16_bn_safetensors):
    path, state = vgg16_bn_safetensors
    model = create_model("maskingnet")
    load_vgg_weights(model, path)
    bn = model.encoder[1][1].bn  # conv2_2 is features.10, its BN features.11
    assert torch.equal(bn.weight, state["features.11.weight"])
    assert torch.equal(bn.running_var, state["features.11.running_var"])


def test_arc2_first_conv_takes_rgb_slice_and_zero_coordinate_slice(vgg16_pth):
    path, state = vgg16_pth
    model = create_model("arc2")
    loaded = load_vgg_weights(model, path)
    weight = model.encoder[0][0].conv.weight
    assert loaded_vgg_names(loaded)[0] == "conv1_1"
    assert torch.equal(weight[:, :3], state["features.0.weight"])
    assert torch.count_nonzero(weight[:, 3:]) == 0


def test_small_width_model_loads_nothing(vgg16_pth):
    assert load_vgg_weights(create_model("arc1", width=0.125), vgg16_pth[0]) == []


def test_file_without_vgg_convs_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"fc.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(CheckpointError, match="features"):
        load_vgg_weights(create_model("arc1", width=0.125), path)
