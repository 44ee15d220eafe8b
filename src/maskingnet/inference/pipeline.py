"""The parts of the one prediction pipeline (:func:`maskingnet.inference.runner.run` runs them): the step
from the network's map to the photo's (:func:`full_resolution`, with the edge stage as its
:class:`PostProcess`), and the :class:`Sink` every result goes to (or :class:`Failed`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from maskingnet.data.coords import Region

from .preprocess import Prepared


class PostProcess(Protocol):
    """The step from the network's map to the photo's (the edge stage,
    :class:`~maskingnet.inference.edges.EdgeStage`): ``probs_small`` (h, w) float32 is the network's own
    output, ``photo`` the (H, W, 3) uint8 RGB photo when it was decoded, ``size`` = (W, H) the photo's size.
    Returns (H, W) float32 probabilities."""

    def __call__(
        self, probs_small: torch.Tensor | np.ndarray, photo: np.ndarray | None, size: tuple[int, int]
    ) -> np.ndarray: ...


def upsample_probs(probs, size: tuple[int, int]):
    """Bilinear resize of probabilities ``(B, h, w)`` to ``size = (H, W)``; thresholding comes after.

    Accepts a tensor (returns a float32 tensor) or a numpy array (returns a float32 array).
    """
    as_numpy = isinstance(probs, np.ndarray)
    tensor = torch.from_numpy(np.ascontiguousarray(probs)) if as_numpy else probs
    tensor = tensor.float()
    height, width = int(size[0]), int(size[1])
    if tuple(tensor.shape[-2:]) != (height, width):
        tensor = F.interpolate(
            tensor.unsqueeze(1), size=(height, width), mode="bilinear", align_corners=False
        )
        tensor = tensor.squeeze(1).clamp_(0.0, 1.0)
    return tensor.numpy() if as_numpy else tensor


def full_resolution(
    probs_small: torch.Tensor,
    photo: np.ndarray | None,
    size: tuple[int, int],
    post: PostProcess | None,
    region: Region | None = None,
) -> np.ndarray:
    """The network's (h, w) car probabilities at the photo's own ``size`` = (W, H), as (H, W) float32.

    ``region``: where a letterboxed photo lies in the network's input; its probabilities are cropped to
    it first, so the padding never reaches the photo. Then ``post`` (the edge stage) when there is one,
    else bilinear up-sampling. Every verb goes through here.
    """
    if region is not None:
        probs_small = crop_to_region(probs_small, region).contiguous()
    if post is not None:
        return post(probs_small, photo, size)
    width, height = size
    probs = upsample_probs(probs_small[None].float(), (height, width))[0].numpy()
    return probs.astype(np.float32, copy=False)


@dataclass
class Failed:
    """What :meth:`Sink.consume` returns for a photo it could not finish (one line for the user)."""

    message: str


class Sink:
    """Where a run's full-resolution probabilities go. Subclasses implement :meth:`consume` (in a writer
    thread) and may extend :meth:`finish`, :meth:`fail` and :meth:`close` (in the calling thread)."""

    need_photo = False
    wants_network_map = False
    """Whether :meth:`consume` reads ``item.network_map`` (the network's own map, cropped to the photo)."""

    def __init__(self, report: Callable[[str], None] | None = None) -> None:
        self.report = report or (lambda line: None)
        self.done = 0
        self.failed = 0
        self.problems: list[str] = []

    def consume(self, item: Prepared, probs: np.ndarray) -> Any:
        """Render, encode or score one photo's (H, W) probabilities; return a result or :class:`Failed`."""
        raise NotImplementedError

    def finish(self, item: Prepared, result: Any) -> None:
        """One photo done (called in input order)."""
        self.done += 1

    def fail(self, item: Prepared, message: str) -> None:
        """One photo unusable or unfinished (called in input order)."""
        self.failed += 1
        self.problems.append(message)
        self.report(message)

    def close(self) -> None:
        """After the last photo of a run that was not interrupted."""


def crop_to_region(probs_small: torch.Tensor, region: Region | None) -> torch.Tensor:
    """The part of the network's (h, w) map where the photo lies (all of it when it fills the input)."""
    if region is None:
        return probs_small
    left, top, width, height = region
    return probs_small[top : top + height, left : left + width]
