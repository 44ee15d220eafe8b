"""``Predictor``: a checkpoint ready to turn photos into car probabilities, masks and cut-outs.

The model sees the whole photo resized to the checkpoint's input size (with the original photo's coordinate
maps; a photo of another aspect scaled to fit and padded, :mod:`~maskingnet.inference.preprocess`); its car
probabilities (cropped back to the photo) are taken to the photo's own resolution by
:func:`~maskingnet.inference.pipeline.full_resolution` (bilinear, then the edge stage when one is attached
as ``post``) and only then thresholded, as the Carvana score is computed. The command-line verbs run the
same steps through :func:`maskingnet.inference.runner.run`, so both give the same masks.
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
from maskingnet.outputs.files import finished_pictures
from maskingnet.outputs.framing import DEFAULT_MARGIN
from maskingnet.outputs.options import picture_request
from maskingnet.runtime import rank_device, share_cpu_threads

from .backends import Backend, make_backend
from .edges import edge_stage
from .pipeline import PostProcess, full_resolution
from .preprocess import Prepared, Source, prepare
from .settings import ModelSettings

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

    The model options (``checkpoint``, ``device``, ``precision``, ``size``, ``tta``, ``backend`` and, by
    keyword, ``refine``, ``guided``, ``clean``) are those of :class:`~maskingnet.inference.settings.
    ModelSettings`; or give ``settings`` itself. ``size`` None takes the checkpoint's spec, else 512x512.
    ``post``: the step from the network's map to the photo's; by default the edge stage
    (:func:`~maskingnet.inference.edges.edge_stage`) the settings describe; with ``refine`` and ``clean``
    both off, bilinear up-sampling.
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
        settings: ModelSettings | None = None,
        **options: Any,
    ) -> None:
        if settings is None:
            settings = ModelSettings(
                checkpoint, size=size, device=device, precision=precision, backend=backend, tta=tta, **options
            )
        self.settings = settings
        self.backend: Backend = make_backend(
            settings.checkpoint, settings.device, settings.precision, settings.backend
        )
        self.size = settings.size or self.backend.spec.size or DEFAULT_SIZE
        self.tta = settings.tta
        self.batch_size = max(1, int(batch_size))
        if post is None:
            refiner = getattr(self.backend, "refiner", None)
            post = edge_stage(refiner, settings.refine, settings.clean, settings.guided)
        self.post = post

    @classmethod
    def from_settings(
        cls, settings: ModelSettings, batch_size: int = 4, post: PostProcess | None = None
    ) -> Predictor:
        """The predictor ``settings`` describe (what every verb builds)."""
        return cls(batch_size=batch_size, post=post, settings=settings)

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
        *,
        crop_to_car: bool = False,
        margin: float = DEFAULT_MARGIN,
        canvas: tuple[int, int] | None = None,
    ) -> Image.Image:
        """The car cut out: RGBA on transparency, or RGB on ``background`` (e.g. (255, 255, 255)), framed
        around the car with ``crop_to_car``/``margin``/``canvas``; the pixels ``predict`` writes for the
        same options."""
        kind, options = picture_request(
            background=background,
            soft_edges=soft_edges,
            threshold=threshold,
            crop_to_car=crop_to_car,
            margin=margin,
            canvas=canvas,
        )
        item = self.prepare(image, need_photo=True)
        probs = self.predict_prepared([item])[0]
        return Image.fromarray(finished_pictures((kind,), item.photo_array(), probs, options)[kind])


def rank_predictor(
    settings: ModelSettings, batch_size: int = 4, post: PostProcess | None = None
) -> Predictor:
    """The :class:`Predictor` of this torchrun rank: ``settings`` on the rank's own GPU, or on its share of
    the CPU cores."""
    share_cpu_threads()
    return Predictor.from_settings(settings.replace(device=rank_device(settings.device)), batch_size, post)
