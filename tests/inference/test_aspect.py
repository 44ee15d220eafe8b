"""Photos of another aspect than the model's: scaled to fit, padded, cropped back; never squashed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import make_half_car_checkpoint
from PIL import Image

from maskingnet.data.coords import letterbox_coord_maps, letterbox_region, resized_coord_maps
from maskingnet.data.transforms import to_tensor
from maskingnet.inference import Predictor, full_resolution, upsample_probs
from maskingnet.inference.preprocess import prepare
from maskingnet.models.spec import InputSpec

MODEL_SIZE = (96, 64)
SHAPES = {"portrait": (120, 240), "square": (200, 200), "panorama": (320, 90)}


class _BrightIsCar:
    """A backend that calls every bright pixel car and records what it was given."""

    spec = InputSpec(size=MODEL_SIZE)
    config = None
    meta: dict = {}
    device = torch.device("cpu")
    precision = "fp32"

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    def __call__(self, images: torch.Tensor, coords: torch.Tensor | None = None) -> torch.Tensor:
        self.seen.append(images.clone())
        return (images[:, 0] > 0).float()


class _OuterBandIsCar(_BrightIsCar):
    """A backend that calls the outer 8 columns (or rows) of its input car, whatever is there."""

    def __init__(self, sides: str) -> None:
        super().__init__()
        self.sides = sides

    def __call__(self, images: torch.Tensor, coords: torch.Tensor | None = None) -> torch.Tensor:
        probs = torch.zeros(images.shape[0], *images.shape[-2:])
        if self.sides == "columns":
            probs[:, :, :8] = probs[:, :, -8:] = 1.0
        else:
            probs[:, :8] = probs[:, -8:] = 1.0
        return probs


def _disc_photo(width: int, height: int, radius_fraction: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """A black photo with a white disc in the middle, and the disc as a bool mask."""
    ys, xs = np.mgrid[:height, :width]
    radius = radius_fraction * min(width, height)
    disc = (xs + 0.5 - width / 2) ** 2 + (ys + 0.5 - height / 2) ** 2 < radius**2
    return np.where(disc[..., None], 255, 0).astype(np.uint8).repeat(3, axis=2), disc


def _plain_predictor(backend) -> Predictor:
    return Predictor(backend, refine=False, clean=False)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("photo_size", [(1918, 1280), (1919, 1280), (1918, 1281), (300, 200)])
def test_a_photo_of_the_model_aspect_fills_the_input(photo_size):
    assert letterbox_region(photo_size, (480, 320)) is None


def test_a_model_trained_on_squashed_photos_gets_them_squashed_as_in_training():
    assert letterbox_region((1918, 1280), (512, 512)) is None
    assert letterbox_region((853, 1280), (512, 512)) == (142, 0, 228, 512)


def test_a_portrait_photo_is_centred_at_its_own_aspect():
    assert letterbox_region((853, 1280), (480, 320)) == (133, 0, 213, 320)


def test_a_panorama_is_padded_above_and_below():
    assert letterbox_region((1920, 540), (480, 320)) == (0, 92, 480, 135)


def test_letterboxed_maps_keep_the_training_slope_and_centre_the_photo():
    region = letterbox_region((853, 1280), (480, 320))
    maps = letterbox_coord_maps((480, 320), region, (853, 1280))
    left, _, width, _ = region
    np.testing.assert_allclose(np.diff(maps[0, 0]), 1 / 480, rtol=1e-4)
    carvana = resized_coord_maps((480, 320), (1918, 1280))
    np.testing.assert_allclose(maps[1, :, 0], carvana[1, :, 0], atol=1e-6)
    assert (maps[0, 0, left] + maps[0, 0, left + width - 1]) / 2 == pytest.approx(0, abs=1 / 480)


@pytest.mark.parametrize("shape", SHAPES)
def test_the_model_sees_the_photo_unsquashed(shape):
    backend = _BrightIsCar()
    photo, _ = _disc_photo(*SHAPES[shape])
    _plain_predictor(backend).predict(photo)
    left, top, width, height = letterbox_region(SHAPES[shape], MODEL_SIZE)
    rows, cols = np.nonzero(backend.seen[0][0, 0, top : top + height, left : left + width].numpy() > 0)
    height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
    assert abs(height - width) <= 1


@pytest.mark.parametrize("shape", SHAPES)
def test_the_mask_lands_where_the_car_is(shape):
    photo, disc = _disc_photo(*SHAPES[shape])
    mask = _plain_predictor(_BrightIsCar()).mask(photo)
    assert mask.shape == disc.shape
    assert _iou(mask, disc) > 0.9


@pytest.mark.parametrize("shape", SHAPES)
def test_padding_never_reaches_the_mask(shape):
    photo, _ = _disc_photo(*SHAPES[shape])
    padded_sides = "rows" if shape == "panorama" else "columns"
    mask = _plain_predictor(_OuterBandIsCar(padded_sides)).mask(photo)
    assert mask.shape == photo.shape[:2]
    assert not mask.any()


def test_the_model_aspect_goes_through_exactly_as_before(tmp_path):
    checkpoint = make_half_car_checkpoint(tmp_path / "half.safetensors", input_size=MODEL_SIZE)
    predictor = Predictor(checkpoint, precision="fp32", refine=False, clean=False)
    photo = np.random.default_rng(0).integers(0, 256, (200, 301, 3), dtype=np.uint8)
    item = predictor.prepare(photo)
    squashed = to_tensor(Image.fromarray(photo).resize(MODEL_SIZE, Image.Resampling.BILINEAR))
    coords = torch.from_numpy(resized_coord_maps(MODEL_SIZE, (301, 200)))
    assert item.region is None
    assert torch.equal(item.tensor, squashed) and torch.equal(item.coords, coords)
    before = upsample_probs(predictor.infer(squashed[None], coords[None]), (200, 301))[0].numpy()
    assert np.array_equal(predictor.predict(photo), before)


def test_a_size_override_of_the_photos_aspect_runs_them_unpadded(tmp_path):
    checkpoint = make_half_car_checkpoint(tmp_path / "half.safetensors", input_size=MODEL_SIZE)
    predictor = Predictor(checkpoint, size=(64, 96), refine=False, clean=False)
    portrait = np.zeros((300, 200, 3), np.uint8)
    assert predictor.prepare(portrait).region is None
    assert predictor.prepare(np.zeros((200, 300, 3), np.uint8)).region == (0, 26, 64, 43)


def test_photos_of_mixed_aspects_share_a_batch(tmp_path):
    checkpoint = make_half_car_checkpoint(tmp_path / "half.safetensors", input_size=MODEL_SIZE)
    predictor = Predictor(checkpoint, precision="fp32")
    rng = np.random.default_rng(1)
    photos = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for w, h in [*SHAPES.values(), (150, 100)]]
    batched = list(predictor.predict_many(photos, batch_size=len(photos)))
    for photo, probs in zip(photos, batched, strict=True):
        assert probs.shape == photo.shape[:2]
        np.testing.assert_allclose(probs, predictor.predict(photo), atol=1e-5)


def test_a_file_is_letterboxed_like_the_same_image_in_memory(tmp_path):
    photo, _ = _disc_photo(*SHAPES["portrait"])
    path = tmp_path / "portrait.png"
    Image.fromarray(photo).save(path)
    from_file, in_memory = prepare(path, MODEL_SIZE), prepare(photo, MODEL_SIZE)
    assert from_file.region == in_memory.region == letterbox_region(SHAPES["portrait"], MODEL_SIZE)
    assert torch.equal(from_file.tensor, in_memory.tensor) and torch.equal(from_file.coords, in_memory.coords)


def test_the_edge_stage_sees_only_the_photo_region():
    seen = []

    def post(probs_small, photo, size):
        seen.append(probs_small)
        return np.zeros(size[::-1], np.float32)

    probs = torch.rand(64, 96)
    full_resolution(probs, None, (120, 240), post, region=(32, 0, 32, 64))
    assert torch.equal(seen[0], probs[:, 32:64])
