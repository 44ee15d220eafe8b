"""The encoder-decoder's behaviour: coordinate maps, the arc1/arc2/arc3/maskingnet differences, dilation,
gradients, configuration."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from maskingnet.data.coords import coord_maps, pad_coord_maps
from maskingnet.models import ModelConfig, create_model

COORD_MODELS = ["arc2", "arc3", "maskingnet"]


def tiny(name: str, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, width=0.125, **overrides).eval()


def crop_with_photo_coords() -> tuple[torch.Tensor, torch.Tensor]:
    """A 64x64 crop of a 128x192 photo, and the photo's coordinate maps cut at the same window."""
    torch.manual_seed(1)
    photo = torch.randn(1, 3, 128, 192)
    maps = coord_maps(128, 192).unsqueeze(0)
    window = (slice(None), slice(None), slice(40, 104), slice(100, 164))
    return photo[window], maps[window]


def shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


@pytest.mark.parametrize("name", COORD_MODELS)
def test_crop_coords_are_used_as_given(name):
    model = tiny(name)
    crop, crop_coords = crop_with_photo_coords()
    with torch.no_grad():
        given, fresh = model(crop, crop_coords), model(crop)
    assert not torch.allclose(given, fresh, atol=1e-5)


def test_model_without_coord_maps_ignores_them():
    model = tiny("arc1")
    crop, crop_coords = crop_with_photo_coords()
    with torch.no_grad():
        assert torch.equal(model(crop, crop_coords), model(crop))


@pytest.mark.parametrize("name", COORD_MODELS)
def test_no_coords_means_whole_input_maps_even_at_odd_sizes(name):
    model = tiny(name)
    image = torch.randn(1, 3, 45, 77)
    with torch.no_grad():
        built, explicit = model(image), model(image, coord_maps(45, 77).unsqueeze(0))
    assert torch.allclose(built, explicit, rtol=1e-4, atol=1e-4)


def test_padding_extends_the_coordinate_ramp():
    padded = pad_coord_maps(coord_maps(45, 77).unsqueeze(0), pad_bottom=19, pad_right=19)
    assert torch.allclose(padded[0], coord_maps(45, 77, 64, 96), atol=1e-6)


def test_padding_extends_a_flipped_ramp_downwards():
    flipped = coord_maps(40, 50).flip(-1).unsqueeze(0)
    padded = pad_coord_maps(flipped, pad_bottom=0, pad_right=14)
    assert torch.allclose(padded[0, 0, 0, 50:], -0.5 - torch.arange(1, 15) / 50, atol=1e-6)


def test_coords_of_the_wrong_size_are_refused():
    with pytest.raises(ValueError, match="coords"):
        tiny("arc2")(torch.randn(1, 3, 32, 32), torch.zeros(1, 2, 32, 30))


def test_arc2_differs_from_arc1_only_in_the_first_conv():
    with torch.device("meta"):
        arc1, arc2 = shapes(create_model("arc1")), shapes(create_model("arc2"))
    differing = {key for key in arc1 if arc1[key] != arc2[key]}
    assert arc1.keys() == arc2.keys()
    assert differing == {"encoder.0.0.conv.weight"}
    assert arc2["encoder.0.0.conv.weight"] == (64, 5, 3, 3)


def test_arc3_differs_from_arc1_only_in_the_first_conv_at_one_sixteenth():
    with torch.device("meta"):
        arc1, arc3 = shapes(create_model("arc1")), shapes(create_model("arc3"))
    differing = {key for key in arc1 if arc1[key] != arc3[key]}
    assert differing == {"encoder.4.0.conv.weight"}
    assert arc3["encoder.4.0.conv.weight"] == (512, 514, 3, 3)


def test_maskingnet_dilates_exactly_the_six_convs_at_one_sixteenth():
    model = create_model("maskingnet", width=0.125)
    dilated = sorted(
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Conv2d) and module.dilation != (1, 1)
    )
    expected = [f"encoder.4.{i}.conv" for i in range(3)] + [f"decoder.0.convs.{i}.conv" for i in range(3)]
    assert dilated == sorted(expected)


def test_dilation_rates_are_a_config_field_that_keeps_the_parameter_count():
    def count(model):
        return sum(p.numel() for p in model.parameters())

    default = create_model("maskingnet", width=0.25)
    wider = create_model("maskingnet", width=0.25, dilation=(1, 1, 2, 2, 4))
    assert wider.encoder[2][0].conv.dilation == (2, 2)
    assert count(wider) == count(default)


def receptive_reach(model: torch.nn.Module, length: int = 640) -> int:
    """How far (in columns) from one output pixel the input gradient reaches, on a long thin strip."""
    image = torch.randn(1, 3, 32, length, requires_grad=True)
    model(image)[0, 1, 16, length // 2].backward()
    columns = image.grad.abs().sum(dim=(0, 1, 2)).nonzero().flatten()
    return int((columns - length // 2).abs().max())


def test_dilation_enlarges_the_receptive_field():
    torch.manual_seed(0)
    arc3 = create_model("arc3", width=0.0625).eval()
    maskingnet = create_model("maskingnet", width=0.0625).eval()
    maskingnet.load_state_dict(arc3.state_dict())
    assert receptive_reach(maskingnet) > receptive_reach(arc3)


@pytest.mark.parametrize("name", ["unet", "segnet", "arc1", "arc2", "arc3", "maskingnet"])
def test_gradients_reach_every_parameter(name):
    model = create_model(name, width=0.125).train()
    torch.manual_seed(0)
    logits = model(torch.randn(2, 3, 64, 64))
    F.cross_entropy(logits, torch.randint(0, 2, (2, 64, 64))).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


def test_config_round_trips_through_a_plain_dict():
    config = create_model("maskingnet", width=0.5).config
    assert ModelConfig.from_dict(config.to_dict()) == config


def test_inconsistent_config_is_refused():
    with pytest.raises(ValueError, match="dilation"):
        ModelConfig(dilation=(1, 2))


@settings(max_examples=25, deadline=None)
@given(height=st.integers(2, 70), width=st.integers(2, 70), top=st.integers(0, 30), left=st.integers(0, 30))
def test_ramp_padding_of_any_crop_equals_the_photo_maps_of_the_larger_window(height, width, top, left):
    photo = coord_maps(100, 100)
    crop = photo[:, top : top + height, left : left + width].unsqueeze(0)
    pad_bottom, pad_right = (-crop.shape[-2]) % 32, (-crop.shape[-1]) % 32
    padded = pad_coord_maps(crop, pad_bottom, pad_right)[0]
    expected = coord_maps(100, 100, 200, 200)[:, top : top + crop.shape[-2] + pad_bottom, left:][
        ..., : padded.shape[-1]
    ]
    assert torch.allclose(padded, expected, atol=1e-5)


@pytest.mark.parametrize("size", [(1, 1), (1, 33), (31, 2)])
def test_tiny_inputs_give_logits_of_the_same_size(size):
    with torch.no_grad():
        logits = tiny("maskingnet")(torch.randn(1, 3, *size))
    assert logits.shape == (1, 2, *size)
