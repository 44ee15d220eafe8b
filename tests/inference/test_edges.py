"""The edge stage (refiner on tiles along the outline) and the clean-up (one car, small holes filled)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from maskingnet.inference.edges import (
    CleanUp,
    EdgeStage,
    GuidedUpsample,
    active_tiles,
    band_around,
    clean_up,
    edge_stage,
    normalise,
    outline_band,
    refine_band,
    resize_probs,
)
from maskingnet.inference.fastpath import prepare_refiner
from maskingnet.models import create_model, load_model, save_model
from maskingnet.models.checkpoint import CheckpointError, attach_refiner, load_refiner, read_header
from maskingnet.models.refiner import Refiner, RefinerConfig


def car_with(*extras: tuple[slice, slice], holes: tuple[tuple[slice, slice], ...] = ()) -> np.ndarray:
    """A 200x300 probability map: a car in the middle, optional extra blobs and holes."""
    probs = np.zeros((200, 300), np.float32)
    probs[60:150, 60:240] = 0.95
    for rows, cols in extras:
        probs[rows, cols] = 0.9
    for rows, cols in holes:
        probs[rows, cols] = 0.02
    return probs


def test_clean_up_drops_a_far_blob():
    probs = car_with((slice(185, 195), slice(0, 80)))
    cleaned = clean_up(probs)
    assert cleaned[190, 40] == 0 and cleaned[100, 150] == probs[100, 150]


def test_clean_up_keeps_a_large_part_next_to_the_car():
    probs = car_with((slice(100, 120), slice(242, 262)))
    assert clean_up(probs)[110, 250] == pytest.approx(0.9)


def test_clean_up_fills_a_small_hole_and_keeps_a_see_through_gap():
    small, gap = (slice(80, 82), slice(100, 102)), (slice(100, 130), slice(150, 200))
    cleaned = clean_up(car_with(holes=(small, gap)), CleanUp(fill_holes=0.001))
    assert cleaned[81, 101] == 1.0 and cleaned[110, 170] == pytest.approx(0.02)


def test_clean_up_can_be_switched_off():
    probs = car_with((slice(185, 195), slice(0, 80)))
    assert np.array_equal(clean_up(probs, CleanUp(enabled=False)), probs)


def test_clean_up_leaves_an_empty_map_alone():
    probs = np.zeros((20, 30), np.float32)
    assert np.array_equal(clean_up(probs), probs)


def test_outline_band_is_the_pixels_near_the_boundary():
    hard = np.zeros((40, 40), bool)
    hard[10:30, 10:30] = True
    band = outline_band(hard, 2)
    assert band[10, 20] and band[8, 20] and band[11, 20] and not band[12, 20] and not band[7, 20]


def test_active_tiles_are_the_grid_cells_the_band_crosses():
    band = np.zeros((100, 130), bool)
    band[5, 5] = band[70, 129] = True
    assert active_tiles(band, 64) == [(0, 0), (64, 128)]


def test_a_fresh_refiner_changes_nothing():
    refiner = Refiner(RefinerConfig(channels=4, tile=16, margin=4)).eval()
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)
    coarse = rng.uniform(0.01, 0.99, (50, 70)).astype(np.float32)
    band = outline_band(coarse > 0.5, 2)
    np.testing.assert_allclose(refine_band(refiner, photo, coarse, band), coarse, atol=1e-5)


def test_refiner_changes_only_band_pixels():
    torch.manual_seed(0)
    refiner = Refiner(RefinerConfig(channels=4, tile=16, margin=4)).eval()
    torch.nn.init.normal_(refiner.head.weight, std=1.0)
    photo = np.full((40, 60, 3), 120, np.uint8)
    coarse = np.zeros((40, 60), np.float32)
    coarse[10:30, 15:45] = 0.9
    band = outline_band(coarse > 0.5, 3)
    refined = refine_band(refiner, photo, coarse, band)
    assert not np.allclose(refined[band], coarse[band]) and np.array_equal(refined[~band], coarse[~band])


def trained_looking_refiner(channels: int = 4) -> Refiner:
    torch.manual_seed(0)
    refiner = Refiner(RefinerConfig(channels=channels, tile=16, margin=16)).eval()
    torch.nn.init.normal_(refiner.head.weight, std=1.0)
    return refiner


def test_refined_tiles_are_the_refiner_run_on_the_whole_photo():
    refiner = trained_looking_refiner()
    rng = np.random.default_rng(2)
    photo = rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)
    coarse = np.zeros((80, 96), np.float32)
    coarse[24:56, 24:72] = 0.8
    band = outline_band(coarse > 0.5, 2)
    with torch.inference_mode():
        logits = refiner(torch.from_numpy(normalise(photo))[None], torch.from_numpy(coarse)[None, None])
        whole = torch.sigmoid(logits)
    interior = band.copy()
    interior[:16] = interior[-16:] = False
    interior[:, :16] = interior[:, -16:] = False
    refined = refine_band(refiner, photo, coarse, band)
    np.testing.assert_allclose(refined[interior], whole[0, 0].numpy()[interior], atol=1e-4)


def test_the_fused_inference_copy_of_the_refiner_gives_its_answers():
    refiner = trained_looking_refiner(channels=8)
    images, probs = torch.randn(3, 3, 40, 40), torch.rand(3, 1, 40, 40)
    with torch.inference_mode():
        np.testing.assert_allclose(prepare_refiner(refiner)(images, probs), refiner(images, probs), atol=1e-4)


def test_the_band_found_at_half_size_is_the_band_to_within_two_pixels():
    probs = np.zeros((120, 160), np.float32)
    probs[30:90, 40:125] = 0.9
    probs[50:52, 20:40] = 0.9  # an antenna two pixels thick
    exact, fast = outline_band(probs > 0.5, 8), band_around(probs, 8)

    def farthest(points: np.ndarray, of: np.ndarray) -> float:
        return float(cv2.distanceTransform((~of).astype(np.uint8), cv2.DIST_L2, 5)[points].max())

    assert farthest(fast, exact) <= 2 and farthest(exact, fast) <= 2 and fast[51, 30]


def test_edge_stage_without_refiner_is_bilinear_up_sampling():
    probs_small = np.random.default_rng(1).uniform(0, 1, (8, 12)).astype(np.float32)
    stage = EdgeStage(refiner=None, clean=CleanUp(enabled=False))
    out = stage(probs_small, None, (48, 32))
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(probs_small)[None, None], size=(32, 48), mode="bilinear", align_corners=False
    )[0, 0].numpy()
    assert out.shape == (32, 48)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert resize_probs(out, (48, 32)) is not None


def test_guided_asks_for_the_guided_filter_over_the_models_refiner():
    refiner = Refiner(RefinerConfig(channels=4))
    assert edge_stage(refiner).refiner is refiner
    chosen = edge_stage(refiner, guided=True)
    assert chosen.refiner is None and chosen.guided is not None and chosen.clean.enabled
    assert edge_stage(refiner, refine=False, guided=True).guided is None


def test_refiner_travels_inside_the_model_file(tmp_path):
    model = create_model("maskingnet", width=0.125)
    plain = save_model(model, tmp_path / "net.safetensors", meta={"input_size": [64, 64]})
    refiner = Refiner(RefinerConfig(channels=4))
    torch.nn.init.normal_(refiner.head.weight)
    both = attach_refiner(plain, refiner, tmp_path / "both.safetensors")
    loaded = load_refiner(both)
    assert loaded.config == refiner.config and torch.equal(loaded.head.weight, refiner.head.weight)
    assert load_refiner(plain) is None
    assert load_model(both).meta == {"input_size": [64, 64]}


def test_refiner_with_unknown_settings_is_refused(tmp_path):
    import json

    from safetensors.torch import load_file, save_file

    model = create_model("maskingnet", width=0.125)
    plain = save_model(model, tmp_path / "n.safetensors")
    path = attach_refiner(plain, Refiner(), tmp_path / "r.safetensors")

    metadata = read_header(path)
    metadata["maskingnet.refiner"] = json.dumps({"channels": 8, "evil": 1})
    save_file(load_file(path), str(path), metadata=metadata)
    with pytest.raises(CheckpointError, match="refiner"):
        load_refiner(path)


def _outline_case(truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A studio-like photo of ``truth`` (dark car, light backdrop) and the network's map at 1/8 scale."""
    import cv2

    photo = np.where(truth[..., None], 50, 210).astype(np.uint8) * np.ones((1, 1, 3), np.uint8)
    height, width = truth.shape
    small = cv2.resize(truth.astype(np.float32), (width // 8, height // 8), interpolation=cv2.INTER_AREA)
    return photo, small


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def _bilinear_and_guided(truth: np.ndarray) -> tuple[float, float]:
    photo, small = _outline_case(truth)
    size = (truth.shape[1], truth.shape[0])
    off = CleanUp(enabled=False)
    bilinear = EdgeStage(None, off, None)(small, photo, size) > 0.5
    guided = EdgeStage(None, off, GuidedUpsample())(small, photo, size) > 0.5
    return _dice(bilinear, truth), _dice(guided, truth)


def test_guided_edge_stage_is_sharper_than_bilinear_on_a_detailed_outline():
    yy, xx = np.mgrid[:320, :480]
    angle, radius = np.arctan2(yy - 160, xx - 240), np.hypot(yy - 160, xx - 240)
    star = radius < 90 + 40 * np.sin(7 * angle)  # spikes a few network pixels wide, like mirrors
    bilinear, guided = _bilinear_and_guided(star)
    assert guided > bilinear + 0.005


def test_guided_edge_stage_is_never_worse_on_a_straight_edge():
    yy, xx = np.mgrid[:320, :480]
    bilinear, guided = _bilinear_and_guided(xx + 0.3 * yy < 250.3)
    assert guided >= bilinear - 1e-4


def test_edge_stage_without_the_photo_falls_back_to_bilinear():
    small = np.random.default_rng(2).uniform(0, 1, (8, 12)).astype(np.float32)
    stage = EdgeStage(None, CleanUp(enabled=False), GuidedUpsample())
    assert stage.needs_photo
    np.testing.assert_allclose(stage(small, None, (48, 32)), resize_probs(small, (48, 32)))


def test_the_edge_stage_works_at_a_bounded_size_whatever_the_photo():
    from maskingnet.inference.edges import MAX_WORKING_PIXELS, working_size

    assert working_size((1918, 1280), 0.5) == (959, 640)
    width, height = working_size((14000, 14000), 0.5)
    assert width * height <= MAX_WORKING_PIXELS and width == height
