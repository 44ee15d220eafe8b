"""From a photo to the model's input: the one place where photos are decoded, resized and normalised.

A source is a file path, the file's bytes (an upload), a PIL image or an array. :func:`prepare` turns it into
a :class:`Prepared` item: the whole photo resized to the model's input size and normalised (``(3, h, w)``),
the original photo's coordinate maps at that size (``(2, h, w)``), the photo's own size (W, H) and, when
asked, the full photo itself (``(H, W, 3)`` uint8) for cut-outs and the edge stage.

A photo of another aspect than the training photos' (3:2, :data:`maskingnet.data.coords.TRAINING_FRAME`; a
portrait phone photo, a square studio shot) is not squashed: it is scaled to fit inside the input keeping
its aspect, centred, and the rest is padded (:func:`letterbox`); ``Prepared.region`` says where it lies,
and :func:`~maskingnet.inference.pipeline.full_resolution` crops the network's map to it. A photo of that
aspect to within a pixel fills the input exactly as in training (``region`` None), so its masks do not
change, also for a model whose input squashes it (512x512). Every input has the model's size either way, so
photos of any shapes share a batch.

Encoded photos (paths, bytes) are decoded at reduced scale when the JPEG allows (``draft``); the model input
always comes from that reduced decode, even when the full photo is decoded too, so a mask does not depend on
which outputs were asked for. In-memory images are taken as they are. :func:`iterate_prepared` decodes many
sources ahead in DataLoader worker processes; a source that cannot be used becomes an item with ``error``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image

from maskingnet.data.coords import Region, letterbox_coord_maps, letterbox_region, resized_coord_maps
from maskingnet.data.io import DEFAULT_MAX_PIXELS, BadInputError, image_size, read_image
from maskingnet.data.transforms import to_tensor
from maskingnet.models.spec import InputSpec
from maskingnet.runtime import decode_workers
from maskingnet.utils.interrupts import ignore_in_worker

Source = str | os.PathLike | bytes | BinaryIO | Image.Image | np.ndarray
"""A photo: a file path, the file's bytes or an open binary stream, a PIL image or an array."""


@dataclass
class Prepared:
    """One photo ready for the model: its input tensor and coordinate maps at the model's size, its own size
    (W, H) and, when asked for, the full photo (``(H, W, 3)`` uint8 tensor). ``region``: where the photo
    lies in the input when it is letterboxed (:func:`maskingnet.data.coords.letterbox_region`), None when it
    fills it. ``error``: why it is unusable. ``seconds``: the work spent on this photo so far (decoding, its
    share of its batch's model call, the step to full resolution and the sink's work), for the manifest.
    ``network_map``: the network's own (h, w) probabilities over the photo, kept for sinks that ask
    (:attr:`~maskingnet.inference.Sink.wants_network_map`)."""

    index: int
    tensor: torch.Tensor | None = None
    coords: torch.Tensor | None = None
    size: tuple[int, int] = (0, 0)
    photo: torch.Tensor | None = None
    error: str | None = None
    region: Region | None = None
    seconds: float = 0.0
    network_map: np.ndarray | None = None

    def photo_array(self) -> np.ndarray | None:
        return self.photo.numpy() if self.photo is not None else None


def model_input(
    image: Image.Image, size: tuple[int, int], spec: InputSpec | None = None, region: Region | None = None
) -> torch.Tensor:
    """The photo resized to the model's input size and normalised, (3, h, w) (as training resizes); with
    ``region``, resized to it and padded to the input size (see :func:`letterbox`)."""
    image = image.convert("RGB")
    target = tuple(size) if region is None else tuple(region[2:])
    if image.size != target:
        image = image.resize(target, Image.Resampling.BILINEAR)
    if spec is None or (spec.mean, spec.std) == (InputSpec().mean, InputSpec().std):
        tensor = to_tensor(image)
    else:
        planes = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
        mean = np.asarray(spec.mean, np.float32)[:, None, None]
        std = np.asarray(spec.std, np.float32)[:, None, None]
        tensor = torch.from_numpy(np.ascontiguousarray((planes - mean) / std))
    return tensor if region is None else letterbox(tensor, size, region)


def letterbox(tensor: torch.Tensor, size: tuple[int, int], region: Region) -> torch.Tensor:
    """A normalised (3, h', w') photo padded to ``size`` = (w, h) around ``region`` with zeros: the spec's
    mean colour. On portrait and square crops of held-out Carvana photos this gave better masks than
    reflected or replicated borders, which repeat the car or smear the floor into the padding."""
    left, top, width, height = region
    pad = ((0, 0), (top, size[1] - top - height), (left, size[0] - left - width))
    return torch.from_numpy(np.pad(tensor.numpy(), pad))


def model_coords(
    size: tuple[int, int], own_size: tuple[int, int], region: Region | None = None
) -> torch.Tensor:
    """The photo's coordinate maps as the model sees them at ``size``, (2, h, w) (as in training)."""
    if region is None:
        return torch.from_numpy(resized_coord_maps(tuple(size), tuple(own_size)))
    return torch.from_numpy(letterbox_coord_maps(tuple(size), region, tuple(own_size)))


def prepare(
    source: Source,
    size: tuple[int, int],
    need_photo: bool = True,
    index: int = 0,
    *,
    spec: InputSpec | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    trained_size: tuple[int, int] | None = None,
) -> Prepared:
    """One source ready for the model (see the module docstring); raises ``BadInputError`` for unusable
    files. In-memory images always keep their photo (it is there anyway). ``trained_size``: the input size
    the model was trained at, when ``size`` overrides it (:func:`maskingnet.data.coords.letterbox_region`)."""
    if isinstance(source, (Image.Image, np.ndarray)):
        return prepare_image(source, size, index, spec=spec, trained_size=trained_size)
    return prepare_encoded(
        source, size, need_photo, index, spec=spec, max_pixels=max_pixels, trained_size=trained_size
    )


def prepare_encoded(
    source: str | os.PathLike | bytes | BinaryIO,
    size: tuple[int, int],
    need_photo: bool,
    index: int = 0,
    *,
    spec: InputSpec | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    trained_size: tuple[int, int] | None = None,
) -> Prepared:
    """Decode a file or its bytes at reduced scale for the model and, if asked, in full for the photo."""
    photo = read_image(source, max_pixels=max_pixels) if need_photo else None
    own_size = photo.size if photo is not None else image_size(source, max_pixels=max_pixels)
    region = letterbox_region(own_size, size, trained_size)
    small = read_image(source, target_size=size if region is None else region[2:], max_pixels=max_pixels)
    return Prepared(
        index=index,
        tensor=model_input(small, size, spec, region),
        coords=model_coords(size, own_size, region),
        size=own_size,
        photo=torch.from_numpy(np.array(photo.convert("RGB"))) if photo is not None else None,
        region=region,
    )


def as_rgb_image(image: Image.Image | np.ndarray) -> Image.Image:
    """A PIL image or an (H, W) / (H, W, 1|3|4) array (uint8, uint16 or float 0..1) as RGB."""
    if isinstance(image, np.ndarray):
        array = image
        if array.dtype != np.uint8:
            scale = 255.0 if array.dtype.kind == "f" and array.max(initial=0) <= 1.0 else 1.0
            scale = 1 / 257 if array.dtype == np.uint16 else scale
            array = np.clip(array.astype(np.float64) * scale, 0, 255).astype(np.uint8)
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[..., 0]
        if array.ndim == 3:
            array = array[..., :3]
        image = Image.fromarray(np.ascontiguousarray(array))
    return image.convert("RGB")


def prepare_image(
    image: Image.Image | np.ndarray,
    size: tuple[int, int],
    index: int = 0,
    *,
    spec: InputSpec | None = None,
    trained_size: tuple[int, int] | None = None,
) -> Prepared:
    """An in-memory image for the model; taken as it is (no EXIF rotation)."""
    rgb = as_rgb_image(image)
    region = letterbox_region(rgb.size, size, trained_size)
    return Prepared(
        index=index,
        tensor=model_input(rgb, size, spec, region),
        coords=model_coords(size, rgb.size, region),
        size=rgb.size,
        photo=torch.from_numpy(np.array(rgb)),
        region=region,
    )


class SourceDataset(torch.utils.data.Dataset):
    """Prepares sources in DataLoader workers; an unusable source becomes an item with ``error`` set."""

    def __init__(
        self,
        sources: Sequence[Source],
        size: tuple[int, int],
        need_photo: bool,
        spec: InputSpec | None,
        trained_size: tuple[int, int] | None = None,
    ) -> None:
        self.sources = list(sources)
        self.size = size
        self.need_photo = need_photo
        self.spec = spec
        self.trained_size = trained_size

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> Prepared:
        source = self.sources[index]
        started = time.perf_counter()
        try:
            item = prepare(
                source, self.size, self.need_photo, index, spec=self.spec, trained_size=self.trained_size
            )
        except BadInputError as error:
            return Prepared(index=index, error=str(error))
        except Exception as error:  # noqa: BLE001 - any undecodable file is reported, never fatal
            return Prepared(index=index, error=f"{source}: {type(error).__name__}: {error}")
        item.seconds = time.perf_counter() - started
        return item


def _as_is(item: Prepared) -> Prepared:
    return item


def iterate_prepared(
    sources: Sequence[Source],
    size: tuple[int, int],
    need_photo: bool,
    workers: int | None = None,
    spec: InputSpec | None = None,
    trained_size: tuple[int, int] | None = None,
) -> Iterator[Prepared]:
    """Prepared items in input order, decoded ahead by ``workers`` processes (0: in this process; None: the
    runtime's default for a CPU network, :func:`~maskingnet.runtime.decode_workers`); ``trained_size`` as
    for :func:`prepare`."""
    if not sources:
        return iter(())
    workers = decode_workers() if workers is None else max(0, workers)
    loader = torch.utils.data.DataLoader(
        SourceDataset(sources, size, need_photo, spec, trained_size),
        batch_size=None,
        shuffle=False,
        num_workers=min(workers, len(sources)),
        collate_fn=_as_is,
        prefetch_factor=4 if workers else None,
        worker_init_fn=ignore_in_worker,  # the main process acts on Ctrl-C and SIGTERM, and kills them
    )
    return iter(loader)


def batched_good(
    items: Iterable[Prepared], batch_size: int, on_error: Callable[[Prepared], None]
) -> Iterator[list[Prepared]]:
    """Group usable items into model batches; unusable ones go to ``on_error`` as they come."""
    batch: list[Prepared] = []
    for item in items:
        if item.error is not None:
            on_error(item)
            continue
        batch.append(item)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch
