"""Encoding output pictures to PNG, WebP or JPEG bytes with OpenCV, and writing them atomically.

``cv2.imencode`` is used instead of PIL's ``Image.save``: on a 1918x1280 RGBA cut-out the PNG costs less
than half the CPU time (docs/prediction.md has the figures), and the files are ordinary PNG/WebP/JPEG files
that PIL and browsers decode to the same pixels. OpenCV wants BGR(A) channel order, so RGB(A) arrays are
swapped here and nowhere else.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from maskingnet.utils import atomic_save

FORMATS = ("png", "webp", "jpg")
SUFFIXES = {"png": ".png", "webp": ".webp", "jpg": ".jpg"}
DEFAULT_QUALITY = {"jpg": 95, "webp": 90}
PNG_COMPRESSION = 1
"""zlib level of PNG outputs, the fastest."""
PNG_FAST = (
    [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
    + [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_DEFAULT]
    if hasattr(cv2, "IMWRITE_PNG_FILTER")
    else []
)
"""One row filter ("up") instead of trying all five on every row: half the CPU time of OpenCV's default on a
photo-sized cut-out, files 4 % larger (9 % larger than PIL's level 3). OpenCV 4.11 and later have the
option; older ones keep their default."""
_TO_BGR = {3: cv2.COLOR_RGB2BGR, 4: cv2.COLOR_RGBA2BGRA}


def check_format(fmt: str, quality: int | None = None) -> str:
    """``fmt`` as one of :data:`FORMATS` (``jpeg``: ``jpg``); a bad name or quality raises ``ValueError``."""
    fmt = fmt.strip().lower().lstrip(".")
    fmt = "jpg" if fmt == "jpeg" else fmt
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: choose from {', '.join(FORMATS)}")
    if quality is not None and not 1 <= quality <= 100:
        raise ValueError(f"quality {quality}: expected 1-100")
    return fmt


def format_of(path: str | os.PathLike) -> str:
    """The format a file name asks for, from its suffix."""
    return check_format(Path(path).suffix or "?")


def as_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 3) or (H, W, 4) uint8 from a PIL image (L, RGB, RGBA) or an array."""
    if isinstance(image, Image.Image):
        if image.mode not in ("L", "RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.mode else "RGB")
        return np.asarray(image)
    return np.asarray(image, dtype=np.uint8)


def encode(image: Image.Image | np.ndarray, fmt: str, quality: int | None = None) -> bytes:
    """The file bytes of ``image`` (grey, RGB or RGBA) as ``fmt``; ``quality`` (1-100) for JPEG and WebP
    (default :data:`DEFAULT_QUALITY`). JPEG has no alpha channel: give it an RGB image."""
    fmt = check_format(fmt, quality)
    array = as_array(image)
    channels = 1 if array.ndim == 2 else array.shape[2]
    if fmt == "jpg" and channels == 4:
        raise ValueError("jpg has no alpha channel: composite the cut-out on a colour first")
    if channels in _TO_BGR:
        array = cv2.cvtColor(array, _TO_BGR[channels])
    if fmt == "png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION, *PNG_FAST]
    elif fmt == "jpg":
        params = [cv2.IMWRITE_JPEG_QUALITY, quality or DEFAULT_QUALITY["jpg"]]
    else:
        params = [cv2.IMWRITE_WEBP_QUALITY, quality or DEFAULT_QUALITY["webp"]]
    ok, buffer = cv2.imencode(SUFFIXES[fmt], array, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {array.shape} image as {fmt}")
    return buffer.tobytes()


def write_image(
    path: str | os.PathLike,
    image: Image.Image | np.ndarray,
    fmt: str | None = None,
    quality: int | None = None,
) -> None:
    """Encode ``image`` (format from ``fmt`` or the file's suffix) and write it atomically (temp + rename)."""
    data = encode(image, fmt or format_of(path), quality)
    atomic_save(path, lambda tmp: Path(tmp).write_bytes(data))
