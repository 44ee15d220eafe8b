"""Parameter and FLOP report (torch.utils.flop_counter on the meta device)."""

from __future__ import annotations

import pytest

from maskingnet.models import ModelConfig, build_model, create_model, model_report


def test_report_counts_the_parameters_of_a_given_model():
    model = create_model("arc2", width=0.25)
    assert model_report(model, size=(64, 64))["params"] == sum(p.numel() for p in model.parameters())


def test_flops_grow_with_the_pixel_count():
    small = model_report(create_model("segnet", width=0.125), size=(64, 64))["gflops"]
    large = model_report(create_model("segnet", width=0.125), size=(128, 128))["gflops"]
    assert large == pytest.approx(4 * small)


def test_flops_are_twice_the_multiply_accumulates_of_the_convs():
    config = ModelConfig(encoder=((4,), (4,)), decoder=((4,),), dilation=(1, 1))
    height, width = 32, 64
    full_res_macs = height * width * 9 * (3 * 4 + 4 * 4 + 4 * 2)  # enc0, dec0, 3x3 classifier
    half_res_macs = (height // 2) * (width // 2) * 9 * (4 * 4)  # enc1
    report = model_report(build_model(config), size=(width, height))
    assert report["gflops"] * 1e9 == 2 * (full_res_macs + half_res_macs)


def test_report_names_the_switches():
    report = model_report("maskingnet", size=(64, 64))
    assert report["coords"] == "mid"
    assert report["dilation"] == [1, 1, 1, 1, 2]
    assert report["pool_indices"] is True


@pytest.mark.parametrize(("name", "expected"), [("unet", 385), ("segnet", 320), ("maskingnet", 456)])
def test_full_width_gflops_at_512_match_the_architecture_document(name, expected):
    assert round(model_report(name, size=(512, 512))["gflops"]) == expected


def test_report_leaves_the_given_model_on_its_device():
    model = create_model("unet", width=0.125)
    model_report(model, size=(32, 32))
    assert next(model.parameters()).device.type == "cpu"
