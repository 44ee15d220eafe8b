"""The one picture path: a photo and its car probabilities to finished pictures and their file bytes.

``predict`` (its ``FileSink``), ``cutout``, :meth:`Predictor.cutout`, :func:`maskingnet.remove` and every
``serve`` endpoint go through :func:`finished_pictures` and :func:`picture_bytes`, so the same photo with the
same :class:`PictureOptions` gives the same pixels and the same bytes on every surface: the mask thresholded
(hard), the cut-out and the photo on a colour with soft edges when asked, framed when asked, and encoded
by OpenCV (:mod:`maskingnet.outputs.encode`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from maskingnet.outputs.encode import as_array, encode
from maskingnet.outputs.framing import Framing, frame_image
from maskingnet.outputs.layout import kind_format
from maskingnet.outputs.pictures import EdgeConfig, render_all

FRAMED_KINDS = ("cutout", "white")
"""The outputs framing applies to: the product pictures (masks and overlays keep the whole photo)."""
WHITE = (255, 255, 255)


@dataclass(frozen=True)
class PictureOptions:
    """How outputs look and are encoded. ``edges``: threshold and soft edges; ``background``: the colour of
    the ``white`` output (and of a JPEG cut-out); ``fmt``: png, webp or jpg for the cut-out and the photo
    on a colour (``auto``: PNG and JPEG; masks and overlays are always PNG); ``quality``: JPEG and WebP
    quality (None: the encoder's default); ``framing``: crop those two to the car."""

    edges: EdgeConfig = field(default_factory=EdgeConfig)
    background: tuple[int, int, int] = WHITE
    fmt: str = "auto"
    quality: int | None = None
    framing: Framing | None = None

    def format_of(self, kind: str) -> str:
        return kind_format(kind, self.fmt)

    def rendered_as(self, kind: str) -> str:
        """The picture a kind is made from: a cut-out written as JPEG is the car on ``background``."""
        return "white" if kind == "cutout" and self.format_of("cutout") == "jpg" else kind


def finished_pictures(
    kinds: Sequence[str], photo: Image.Image | np.ndarray | None, probs: np.ndarray, options: PictureOptions
) -> dict[str, np.ndarray]:
    """Each kind of ``kinds`` as the uint8 array that is written: rendered (sharing one matte), then
    framed where asked; ``photo`` may be None for masks alone."""
    rendered_as = {kind: options.rendered_as(kind) for kind in kinds}
    renders = tuple(dict.fromkeys(rendered_as.values()))
    images = render_all(renders, photo, probs, options.edges, background=options.background)
    arrays = {kind: as_array(image) for kind, image in images.items()}
    hard = probs > options.edges.threshold
    return {kind: _framed(kind, rendered_as[kind], arrays, hard, options) for kind in kinds}


def _framed(
    kind: str, rendered: str, arrays: dict[str, np.ndarray], hard: np.ndarray, options: PictureOptions
) -> np.ndarray:
    array = arrays[rendered]
    if options.framing is None or kind not in FRAMED_KINDS:
        return array
    cutout = arrays.get("cutout")
    alpha = cutout[..., 3] if cutout is not None and cutout.ndim == 3 else hard
    fill = (0, 0, 0, 0) if array.ndim == 3 and array.shape[2] == 4 else tuple(options.background)
    return frame_image(array, alpha, options.framing, fill)


def picture_bytes(kind: str, picture: np.ndarray, options: PictureOptions, fmt: str | None = None) -> bytes:
    """The file bytes of one finished picture, in its kind's format or ``fmt`` (a file name's choice);
    ``ValueError`` if it cannot be."""
    return encode(picture, fmt or options.format_of(kind), options.quality)


def picture_files(
    kinds: Sequence[str], photo: Image.Image | np.ndarray | None, probs: np.ndarray, options: PictureOptions
) -> dict[str, bytes]:
    """Each kind's file bytes: :func:`finished_pictures`, then :func:`picture_bytes`."""
    pictures = finished_pictures(kinds, photo, probs, options)
    return {kind: picture_bytes(kind, picture, options) for kind, picture in pictures.items()}
