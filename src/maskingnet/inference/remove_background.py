"""``maskingnet.remove(data)``: rembg's one-liner, with rembg's type contract.

>>> from maskingnet import remove, new_session
>>> png_bytes = remove(open("car.jpg", "rb").read())          # bytes in, PNG bytes out
>>> cutout = remove(Image.open("car.jpg"))                      # PIL in, RGBA PIL out
>>> session = new_session("mine.safetensors")                  # keep a model loaded across calls
>>> rgba = remove(array, session=session, soft_edges=True)     # ndarray in, (H, W, 4) ndarray out

The session is a :class:`~maskingnet.inference.Predictor`; without one, the bundled model is loaded on the
first call and kept for the next ones (one per process).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from PIL import Image

from maskingnet.outputs import parse_color
from maskingnet.outputs.files import finished_pictures, picture_bytes
from maskingnet.outputs.options import picture_request

_DEFAULT_SESSION: Any = None
_SESSION_LOCK = threading.Lock()


def new_session(model: Any = None, **predictor_options: Any) -> Any:
    """A loaded model to pass as ``session=``: a bundled name, a ``.safetensors``/``.onnx`` file or None (the
    bundled default); ``predictor_options`` go to :class:`~maskingnet.inference.Predictor` (``device``,
    ``precision``, ``guided``, ...)."""
    from maskingnet.inference import Predictor

    return Predictor(model, **predictor_options)


def default_session() -> Any:
    """The bundled model, loaded once per process."""
    global _DEFAULT_SESSION
    with _SESSION_LOCK:
        if _DEFAULT_SESSION is None:
            _DEFAULT_SESSION = new_session()
        return _DEFAULT_SESSION


def remove(
    data: bytes | Image.Image | np.ndarray,
    session: Any = None,
    *,
    only_mask: bool = False,
    bgcolor: tuple[int, ...] | str | None = None,
    soft_edges: bool = False,
    threshold: float = 0.5,
    crop_to_car: bool = False,
    margin: float = 0.05,
    canvas: tuple[int, int] | None = None,
    format: str = "png",
    quality: int | None = None,
) -> bytes | Image.Image | np.ndarray:
    """The car of ``data`` cut out, in ``data``'s own type: encoded bytes (a photo file's bytes) give encoded
    bytes (``format`` png, webp or jpg at ``quality``), a PIL image gives a PIL image, an array an array.

    ``only_mask``: the mask (0/255) instead; ``bgcolor``: the car on this colour (RGB or RGBA tuple, a name
    or ``#rrggbb``) instead of transparency (a jpg always has one: white by default); ``soft_edges``,
    ``threshold``: as ``maskingnet predict``; ``crop_to_car`` with ``margin``, or ``canvas`` = (W, H): framed
    around the car as ``--crop-to-car``/``--canvas``.
    """
    if not isinstance(data, (bytes, bytearray, memoryview, Image.Image, np.ndarray)):
        raise TypeError(f"remove() takes bytes, a PIL image or a numpy array, not {type(data).__name__}")
    kind, options = picture_request(
        "mask" if only_mask else "cutout",
        format=format,
        quality=quality,
        crop_to_car=crop_to_car,
        margin=margin,
        canvas=canvas,
        background=_colour(bgcolor),
        soft_edges=soft_edges,
        threshold=threshold,
    )
    predictor = session if session is not None else default_session()
    source = bytes(data) if isinstance(data, (bytearray, memoryview)) else data
    item = predictor.prepare(source, need_photo=True)
    probs = predictor.predict_prepared([item])[0]
    picture = finished_pictures((kind,), item.photo_array(), probs, options)[kind]
    if isinstance(data, Image.Image):
        return Image.fromarray(picture)
    if isinstance(data, np.ndarray):
        return picture.copy()
    return picture_bytes(kind, picture, options, options.fmt)


def _colour(bgcolor: tuple[int, ...] | str | None) -> tuple[int, int, int] | None:
    if bgcolor is None:
        return None
    if isinstance(bgcolor, str):
        return parse_color(bgcolor)
    return tuple(int(value) for value in bgcolor[:3])  # type: ignore[return-value]
