"""The registry: six names, the thesis's exact parameter counts, any input size."""

from __future__ import annotations

import pytest
import torch

from maskingnet.models import PAPER_PARAMS, create_model, list_models

THESIS_PARAMS = {
    "unet": 31_043_586,
    "segnet": 29_444_162,
    "arc1": 32_799_554,
    "arc2": 32_800_706,
    "arc3": 32_808_770,
    "maskingnet": 32_808_770,
}


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_list_models_names_the_six_networks_in_thesis_order():
    assert list_models() == ["unet", "segnet", "arc1", "arc2", "arc3", "maskingnet"]


def test_paper_params_table_matches_the_thesis():
    assert PAPER_PARAMS == THESIS_PARAMS


@pytest.mark.parametrize("name", list(THESIS_PARAMS))
def test_full_width_parameter_count_equals_the_thesis(name):
    assert count(create_model(name)) == THESIS_PARAMS[name]


@pytest.mark.parametrize("name", list(THESIS_PARAMS))
def test_odd_input_size_gives_logits_of_the_same_size(name):
    model = create_model(name, width=0.125).eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 100, 150))
    assert logits.shape == (1, 2, 100, 150)


def test_full_carvana_resolution_works_at_a_small_width():
    model = create_model("maskingnet", width=0.03125).eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 1280, 1918))
    assert logits.shape == (1, 2, 1280, 1918)


def test_num_classes_and_in_channels_set_the_logit_and_input_channels():
    model = create_model("arc1", num_classes=3, in_channels=1, width=0.125).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 1, 64, 64))
    assert logits.shape == (2, 3, 64, 64)


def test_width_scales_every_channel_count():
    model = create_model("segnet", width=0.5)
    assert model.encoder[0][0].conv.out_channels == 32
    assert model.encoder[4][2].conv.out_channels == 256


def test_unknown_model_name_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="maskingnet"):
        create_model("resnet")


def test_unknown_override_is_refused():
    with pytest.raises(ValueError, match="dilations"):
        create_model("arc1", dilations=(1, 1, 1, 1, 2))


def test_override_replaces_a_config_field():
    model = create_model("arc3", width=0.125, coords="none")
    assert model.config.coords == "none"
    assert count(model) == count(create_model("arc1", width=0.125))
