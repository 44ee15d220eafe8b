"""``Predictor``: a checkpoint ready to turn photos into car probabilities, masks and cut-outs.

The model sees the whole photo resized to the checkpoint's input size (with the original photo's coordinate
maps; a photo of another aspect scaled to fit and padded, :mod:`~maskingnet.inference.preprocess`); its car
probabilities (cropped back to the photo) are taken to the photo's own resolution by
:func:`~maskingnet.inference.pipeline.full_resolution` (bilinear, then the edge stage when one is attached
as ``post``) and only then thresholded, as the Carvana score is computed. The command-line verbs run the
same steps through :func:`maskingnet.inference.pipeline.run`, so both give the same masks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from maskingnet.data.coords import whole_photo_coords
from maskingnet.data.io import DEFAULT_MAX_PIXELS
from maskingnet.models.spec import InputSpec
from maskingnet.outputs import EdgeConfig, render
from maskingnet.runtime import rank_device, share_cpu_threads
from maskingnet.utils import parse_size

from .backends import Backend, make_backend
from .edges import edge_stage
from .pipeline import PostProcess, full_resolution
from .preprocess import Prepared, Source, prepare

DEFAULT_SIZE = (512, 512)


def predict_probs(backend, images: torch.Tensor, coords: torch.Tensor | None = None, tta: bool = False):
    """Car probabilities ``(B, H, W)`` float32 on the CPU for a batch of normalised images.

    With ``tta`` the horizontally flipped batch is also run - image *and* coordinate maps flipped together,
    so every pixel keeps its true coordinates - and the two probability maps are averaged after flipping the
    second one back. When ``coords`` is None the whole-photo maps are built (what the model itself would use).
    """
    if not tta:
        return backend(images, coords)
    if coords is None:
        coords = whole_photo_coords(images.shape[0], images.shape[-2], images.shape[-1])
    probs = backend(images, coords)
    flipped = backend(torch.flip(images, dims=[-1]), torch.flip(coords, dims=[-1]))
    return (probs + torch.flip(flipped, dims=[-1])) / 2


class Predictor:
    """Car probability maps, masks and cut-outs from a checkpoint, for photos as paths, bytes, PIL images or
    arrays.

    >>> predictor = Predictor("runs/real-sample/checkpoints/best.safetensors")
    >>> probs = predictor.predict("car.jpg")        # (H, W) float32 at the photo's own resolution
    >>> predictor.cutout("car.jpg").save("car.png")  # RGBA

    ``checkpoint``: a bundled model's name (None: the default bundled model), a ``.safetensors`` or
    ``.onnx`` file, a loaded model or a backend. ``size`` (W, H), an
    int or ``"WxH"``: the model's input size; None takes the checkpoint's spec, else 512x512. ``post``: the
    step from the network's map to the photo's; by default the edge stage
    (:func:`~maskingnet.inference.edges.edge_stage`): the model file's refiner when ``refine`` (the guided
    filter when it has none, or with ``guided``), the clean-up (one car, small holes filled) when ``clean``;
    with both off, bilinear up-sampling.
    """

    def __init__(
        self,
        checkpoint: Any = None,
        device: str = "auto",
        precision: str = "auto",
        size: tuple[int, int] | int | str | None = None,
        tta: bool = False,
        backend: str = "auto",
        batch_size: int = 4,
        post: PostProcess | None = None,
        *,
        refine: bool = True,
        clean: bool = True,
        guided: bool = False,
    ) -> None:
        self.backend: Backend = make_backend(checkpoint, device, precision, backend)
        self.size = parse_size(size) or self.backend.spec.size or DEFAULT_SIZE
        self.tta = tta
        self.batch_size = max(1, int(batch_size))
        if post is None:
            post = edge_stage(getattr(self.backend, "refiner", None), refine, clean, guided)
        self.post = post

    @property
    def post_needs_photo(self) -> bool:
        """Whether the step to full resolution looks at the photo (the refiner does, the clean-up not)."""
        return self.post is not None and getattr(self.post, "needs_photo", True)

    @property
    def spec(self) -> InputSpec:
        """The backend's input spec at the size this predictor runs."""
        return self.backend.spec.with_size(self.size)

    @property
    def device(self) -> torch.device:
        return torch.device(self.backend.device)

    def prepare(
        self, source: Source, need_photo: bool = True, index: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> Prepared:
        """Decode/convert one photo for the model (:func:`maskingnet.inference.preprocess.prepare`); the
        full photo is kept when asked for or when the edge stage needs it."""
        need_photo = need_photo or self.post_needs_photo
        return prepare(
            source,
            self.size,
            need_photo,
            index,
            spec=self.spec,
            max_pixels=max_pixels,
            trained_size=self.backend.spec.size,
        )

    def infer(self, batch: torch.Tensor, coords: torch.Tensor | None = None) -> torch.Tensor:
        """Car probabilities (B, h, w) at the model's input size for a (B, 3, h, w) batch.

        ``coords`` (B, 2, h, w): the photos' coordinate maps; None lets the model build whole-input maps.
        """
        if self.device.type == "cuda":
            batch = batch.pin_memory()
            coords = coords.pin_memory() if coords is not None else None
        with torch.inference_mode():
            return predict_probs(self.backend, batch, coords, tta=self.tta)

    def infer_prepared(self, items: Sequence[Prepared]) -> torch.Tensor:
        """``infer`` on a batch of prepared photos."""
        return self.infer(
            torch.stack([item.tensor for item in items]), torch.stack([item.coords for item in items])
        )

    def full_resolution(self, probs_small: torch.Tensor, item: Prepared) -> np.ndarray:
        """One photo's (h, w) probabilities at its own resolution, (H, W) float32 (edge stage included)."""
        return full_resolution(probs_small, item.photo_array(), item.size, self.post, item.region)

    def predict_prepared(self, items: Sequence[Prepared]) -> list[np.ndarray]:
        """Probability maps at each photo's own size for already prepared photos (one model batch)."""
        probs = self.infer_prepared(items)
        return [self.full_resolution(probs[i], item) for i, item in enumerate(items)]

    def predict(self, image: Source) -> np.ndarray:
        """Car probability map (H, W) float32 at the photo's own resolution (EXIF orientation applied)."""
        return self.predict_prepared([self.prepare(image, need_photo=False)])[0]

    def predict_many(self, images: Iterable[Source], batch_size: int | None = None) -> Iterator[np.ndarray]:
        """Probability maps for many photos, in order, batched ``batch_size`` at a time."""
        size = max(1, batch_size or self.batch_size)
        pending: list[Prepared] = []
        for image in images:
            pending.append(self.prepare(image, need_photo=False))
            if len(pending) == size:
                yield from self.predict_prepared(pending)
                pending = []
        if pending:
            yield from self.predict_prepared(pending)

    def mask(self, image: Source, threshold: float = 0.5) -> np.ndarray:
        """Boolean car mask (H, W) at the photo's own resolution."""
        return self.predict(image) > threshold

    def cutout(
        self,
        image: Source,
        threshold: float = 0.5,
        soft_edges: bool = False,
        background: tuple[int, int, int] | None = None,
    ) -> Image.Image:
        """The car cut out: RGBA on transparency, or RGB on ``background`` (e.g. (255, 255, 255))."""
        item = self.prepare(image, need_photo=True)
        probs = self.predict_prepared([item])[0]
        edges = EdgeConfig(threshold=threshold, soft=soft_edges)
        if background is None:
            return render("cutout", item.photo_array(), probs, edges)
        return render("white", item.photo_array(), probs, edges, background=background)


def rank_predictor(config: Any, post: PostProcess | None = None) -> Predictor:
    """The :class:`Predictor` of this torchrun rank (its own GPU, or its share of the CPU cores), built from
    any config with ``checkpoint, device, precision, size, tta, backend`` (and ``batch_size``)."""
    share_cpu_threads()
    return Predictor(
        config.checkpoint,
        rank_device(config.device),
        config.precision,
        config.size,
        config.tta,
        config.backend,
        batch_size=getattr(config, "batch_size", 4),
        post=post,
        refine=getattr(config, "refine", True),
        clean=getattr(config, "clean", True),
        guided=getattr(config, "guided", False),
    )
