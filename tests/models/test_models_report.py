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


def test_stage_parameters_match_the_segnet_table_of_the_architecture_document():
    stages = model_report("segnet", size=(32, 32))["params_by_stage"]
    assert stages == {
        "enc1": 38_976, "enc2": 221_952, "enc3": 1_476_864, "enc4": 5_902_848, "enc5": 7_082_496,
        "dec5": 7_082_496, "dec4": 5_902_080, "dec3": 1_476_480, "dec2": 221_760, "dec1": 37_056,
        "classifier": 1_154,
    }  # fmt: skip


def test_stage_parameters_match_the_arc1_table_of_the_architecture_document():
    stages = model_report("arc1", size=(32, 32))["params_by_stage"]
    decoder = [stages[f"dec{level}"] for level in (5, 4, 3, 2, 1)]
    assert decoder == [7_082_496, 8_261_376, 2_066_304, 517_056, 148_032]


def test_stage_parameters_match_the_unet_table_of_the_architecture_document():
    stages = model_report("unet", size=(32, 32))["params_by_stage"]
    encoder = [stages[f"enc{level}"] for level in (1, 2, 3, 4, 5)]
    decoder = [stages[f"dec{level}"] for level in (4, 3, 2, 1)]
    assert encoder == [38_976, 221_952, 886_272, 3_542_016, 14_161_920]
    assert decoder == [9_178_624, 2_295_552, 574_336, 143_808]
    assert stages["classifier"] == 130
