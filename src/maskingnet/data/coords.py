"""The coordinate maps, the one place their convention is written down and computed.

For a photo of width ``W`` and height ``H`` the maps are two channels ``[X, Y]`` with
``X[i, j] = j / W - 0.5`` and ``Y[i, j] = i / H - 0.5``, defined on the *original* photo. Whatever is done to
the photo later (resize, reduced-scale JPEG decode, crop, flip, the network's padding) moves the maps with
it, so every pixel keeps saying where in the original photo it came from. A photo of another aspect than
the training photos' is letterboxed (:func:`letterbox_coord_maps`): there the frame is the padded input.

- :func:`coord_maps`: the whole input's maps as a tensor (what a network builds when given none), optionally
  continued past the input into the network's padding.
- :func:`whole_photo_coords`: the same for a batch.
- :func:`resized_coord_maps`: the original photo's maps as seen at a smaller size (pixel centres aligned,
  like PIL's resize and JPEG draft decoding): what the model is given for a resized photo.
- :func:`pad_coord_maps`: continue given maps (of a crop, a flip...) into the network's padding.
- :func:`letterbox_region` and :func:`letterbox_coord_maps`: a photo of another aspect than the training
  photos', scaled to fit inside the input and padded (its aspect kept): where it lies, and the maps.
"""

from __future__ import annotations

import numpy as np
import torch

CONVENTION = "X = j / W - 0.5, Y = i / H - 0.5 on the original photo; channels [X, Y]; centres aligned"


def coord_maps(
    height: int,
    width: int,
    padded_height: int | None = None,
    padded_width: int | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Whole-input coordinate maps ``(2, padded_height, padded_width)``, channels ``[X, Y]``.

    Rows/columns past ``height``/``width`` (the model's padding) continue the same ramp. Traceable for the
    ONNX exporter: shape arithmetic only.
    """
    padded_height = height if padded_height is None else padded_height
    padded_width = width if padded_width is None else padded_width
    xs = torch.arange(padded_width, device=device, dtype=torch.float32) / width - 0.5
    ys = torch.arange(padded_height, device=device, dtype=torch.float32) / height - 0.5
    x_map = xs.view(1, padded_width).expand(padded_height, padded_width)
    y_map = ys.view(padded_height, 1).expand(padded_height, padded_width)
    return torch.stack([x_map, y_map]).to(dtype)


def whole_photo_coords(batch: int, height: int, width: int) -> torch.Tensor:
    """Coordinate maps ``(batch, 2, H, W)`` for uncropped photos."""
    return coord_maps(height, width).unsqueeze(0).expand(batch, -1, -1, -1).contiguous()


def resized_coord_maps(size: tuple[int, int], original_size: tuple[int, int]) -> np.ndarray:
    """The original photo's coordinate maps as seen at ``size`` = (w, h), shape (2, h, w), float32.

    ``original_size`` = (W, H) is the photo's full size. Output pixel ``j`` covers original position
    ``(j + 0.5) * W / w - 0.5``, so a photo decoded at reduced scale gets the coordinates of the full one.
    Equal sizes give :func:`coord_maps`.
    """
    (w, h), (full_w, full_h) = size, original_size
    return _maps(_axis(w, full_w), _axis(h, full_h))


def _axis(count: int, full: float) -> np.ndarray:
    """One axis of the maps: ``count`` pixels showing ``full`` original pixels, centres aligned."""
    return ((np.arange(count) + 0.5) * (full / count) - 0.5) / full - 0.5


def _maps(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    maps = np.empty((2, len(y), len(x)), dtype=np.float32)
    maps[0] = x[None, :]
    maps[1] = y[:, None]
    return maps


def extend_ramp(maps: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    """Append ``pad`` slices along ``dim`` that continue ``maps`` linearly (its mean slope along ``dim``).

    Coordinate maps of a crop, resize or flip are linear ramps, so this is exactly the maps of the larger
    window; a single slice (no slope) is repeated.
    """
    size = maps.shape[dim]
    first = maps.narrow(dim, 0, 1)
    last = maps.narrow(dim, size - 1, 1)
    slope = (last - first) / max(size - 1, 1)
    steps_shape = [1] * maps.dim()
    steps_shape[dim] = pad
    steps = torch.arange(1, pad + 1, device=maps.device, dtype=maps.dtype).view(steps_shape)
    return torch.cat([maps, last + steps * slope], dim=dim)


def pad_coord_maps(coords: torch.Tensor, pad_bottom: int, pad_right: int) -> torch.Tensor:
    """Pad ``(B, 2, H, W)`` coordinate maps on the bottom and right by extending their ramps."""
    return extend_ramp(extend_ramp(coords, pad_right, dim=-1), pad_bottom, dim=-2)


Region = tuple[int, int, int, int]
"""Where a photo lies in the model's input: (left, top, width, height) in input pixels."""


TRAINING_FRAME = (1918, 1280)
"""The shape of the photos the models here learn from (Carvana's, and the synthetic set's by default). A
model's training size may squash it (the default, 512x512, does); photos are squashed the same way."""


def letterbox_region(
    photo_size: tuple[int, int],
    size: tuple[int, int],
    trained_size: tuple[int, int] | None = None,
    tolerance: int = 1,
) -> Region | None:
    """Where a photo of ``photo_size`` = (W, H) lies in an input of ``size`` = (w, h): scaled to fit inside
    it keeping its aspect (squashed only as much as the model's training squashed :data:`TRAINING_FRAME`
    into ``trained_size``, default ``size``), centred. None when it would fill the input to within
    ``tolerance`` pixels a side, as a training photo does (it is then resized to the whole input, as in
    training, rather than padded by a rounding pixel)."""
    (photo_w, photo_h), (w, h) = photo_size, size
    trained_w, trained_h = trained_size or size
    squash = (trained_w / trained_h) / (TRAINING_FRAME[0] / TRAINING_FRAME[1])
    ratio = (photo_w / photo_h) * squash / (w / h)
    fit_w = min(w, max(1, round(w * ratio)))
    fit_h = min(h, max(1, round(h / ratio)))
    if w - fit_w <= tolerance and h - fit_h <= tolerance:
        return None
    return (w - fit_w) // 2, (h - fit_h) // 2, fit_w, fit_h


def letterbox_coord_maps(size: tuple[int, int], region: Region, photo_size: tuple[int, int]) -> np.ndarray:
    """The coordinate maps (2, h, w) of an input of ``size`` = (w, h) holding a photo of ``photo_size`` at
    ``region``: the whole input is taken as the frame, as if the photo were the middle of a larger photo
    of the model's aspect. Its maps then cover [-0.5, 0.5) with the slope of training and the photo gets a
    centred window of them, as a training crop does; the photo's own [-0.5, 0.5) continued into the
    padding would give values and slopes no training photo has (both measured the same on real photos).
    """
    (w, h), (_, _, fit_w, fit_h), (photo_w, photo_h) = size, region, photo_size
    return _maps(_axis(w, w * photo_w / fit_w), _axis(h, h * photo_h / fit_h))
