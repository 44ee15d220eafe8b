"""``maskingnet.remove``: rembg's one-liner with its type contract and a reusable session."""

import io

import numpy as np
import pytest
from helpers import make_half_car_checkpoint
from PIL import Image

import maskingnet
from maskingnet import new_session, remove


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    path = make_half_car_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")
    return new_session(path, precision="fp32")


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (32, 48, 3), dtype=np.uint8)


def jpeg_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_bytes_in_gives_png_bytes_out(session, pixels):
    out = remove(jpeg_bytes(pixels), session=session)
    assert isinstance(out, bytes) and out.startswith(b"\x89PNG")
    image = Image.open(io.BytesIO(out))
    assert image.mode == "RGBA" and image.size == (48, 32)


def test_a_pil_image_in_gives_an_rgba_pil_image_out(session, pixels):
    out = remove(Image.fromarray(pixels), session=session)
    assert isinstance(out, Image.Image) and out.mode == "RGBA" and out.size == (48, 32)


def test_an_array_in_gives_an_rgba_array_out(session, pixels):
    out = remove(pixels, session=session)
    assert isinstance(out, np.ndarray) and out.shape == (32, 48, 4) and out.dtype == np.uint8


def test_only_mask_and_a_background_colour(session, pixels):
    mask = remove(pixels, session=session, only_mask=True)
    assert mask.ndim == 2 and set(np.unique(mask)) <= {0, 255}
    on_red = remove(pixels, session=session, bgcolor=(255, 0, 0, 255))
    assert on_red.shape == (32, 48, 3)


def test_jpg_bytes_come_on_white_and_a_canvas_frames_the_car(session, pixels):
    out = remove(jpeg_bytes(pixels), session=session, format="jpg", canvas=(64, 64))
    image = Image.open(io.BytesIO(out))
    assert image.format == "JPEG" and image.size == (64, 64)


def test_the_default_session_is_loaded_once(monkeypatch, session, pixels):
    import maskingnet.inference.remove_background as module

    made = []
    monkeypatch.setattr(module, "_DEFAULT_SESSION", None)
    monkeypatch.setattr(module, "new_session", lambda: made.append(1) or session)
    remove(pixels)
    remove(pixels)
    assert made == [1]


def test_other_types_are_refused_with_the_type_named(session):
    with pytest.raises(TypeError, match="not str"):
        remove("car.jpg", session=session)


def test_remove_is_a_top_level_name():
    assert maskingnet.remove is remove
