"""The output options every surface takes, checked in one place: ``predict`` (its own flags), ``cutout``,
:func:`maskingnet.remove` and ``serve`` (``/v1/cutout``, ``/v1/mask`` and the page: query parameters or
form fields) all turn them into :class:`~maskingnet.outputs.files.PictureOptions` here.

- ``format``: png, webp or jpg for a cut-out or a photo on a colour (a mask is always PNG); ``quality``:
  JPEG and WebP, 1-100;
- ``crop_to_car`` with ``margin`` (a fraction of the car's box), ``canvas`` (WxH; implies cropping);
- ``background``: a colour puts the car on it (no colour: transparent; a JPEG has white);
- ``soft_edges``, ``threshold``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from maskingnet.outputs.encode import check_format
from maskingnet.outputs.files import WHITE, PictureOptions
from maskingnet.outputs.framing import DEFAULT_MARGIN, Framing, check_canvas
from maskingnet.outputs.pictures import EdgeConfig, check_threshold, parse_color
from maskingnet.utils import parse_size

OUTPUT_OPTIONS = (
    "format",
    "quality",
    "crop_to_car",
    "margin",
    "canvas",
    "background",
    "soft_edges",
    "threshold",
)
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}
NO_COLOUR = {"", "transparent", "none"}


class OptionError(ValueError):
    """One option that cannot be used; ``name`` is the option (a query or form field, a keyword)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def picture_request(
    kind: str = "cutout",
    *,
    format: str = "png",
    quality: int | None = None,
    crop_to_car: bool = False,
    margin: float = DEFAULT_MARGIN,
    canvas: tuple[int, int] | None = None,
    background: tuple[int, int, int] | None = None,
    soft_edges: bool = False,
    threshold: float = 0.5,
) -> tuple[str, PictureOptions]:
    """The picture to make for ``kind`` (``cutout`` or ``mask``) and how: ``mask``, ``cutout``
    (transparent, or the car on white when the format is JPEG) or ``white`` (the car on ``background``)."""
    fmt = _checked("format", lambda: check_format(format))
    _checked("quality", lambda: check_format(fmt, quality))
    _checked("threshold", lambda: check_threshold(threshold, "threshold"))
    if canvas is not None:
        _checked("canvas", lambda: check_canvas(canvas))
    framing = None
    if crop_to_car or canvas is not None:
        framing = _checked("margin", lambda: Framing(margin, canvas))
    picture = "mask" if kind == "mask" else "cutout" if background is None else "white"
    edges = EdgeConfig(threshold=threshold, soft=soft_edges)
    return picture, PictureOptions(edges, background or WHITE, fmt, quality, framing)


def _checked(name: str, check: Any) -> Any:
    try:
        return check()
    except OptionError:
        raise
    except ValueError as error:
        raise OptionError(name, str(error)) from None


def options_from_fields(fields: Mapping[str, str]) -> dict[str, Any]:
    """Text fields (a query string, a form) as :func:`picture_request`'s keyword arguments. An unknown
    field, or a value that is not one, raises :class:`OptionError` naming it."""
    unknown = sorted(set(fields) - set(OUTPUT_OPTIONS))
    if unknown:
        raise OptionError(unknown[0], f"unknown option {unknown[0]!r} (options: {', '.join(OUTPUT_OPTIONS)})")
    parsers = {
        "format": str,
        "quality": lambda text: _number("quality", text, int),
        "crop_to_car": lambda text: _bool("crop_to_car", text),
        "margin": lambda text: _number("margin", text, float),
        "canvas": lambda text: _checked("canvas", lambda: parse_size(text, square=False, what="canvas")),
        "background": _background,
        "soft_edges": lambda text: _bool("soft_edges", text),
        "threshold": lambda text: _number("threshold", text, float),
    }
    return {name: parsers[name](value) for name, value in fields.items()}


def _bool(name: str, text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise OptionError(name, f"{name}={text!r}: expected true or false")


def _number(name: str, text: str, kind: type) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise OptionError(name, f"{name}={text!r}: expected a number") from None


def _background(text: str) -> tuple[int, int, int] | None:
    if text.strip().lower() in NO_COLOUR:
        return None
    try:
        return parse_color(text)
    except ValueError as error:
        raise OptionError("background", f"background={text!r}: {error}") from None
