"""Prediction for people: ``Predictor`` for library users, ``predict_files`` behind ``maskingnet predict``.

The model sees the whole photo resized to the checkpoint's input size (whole-photo coordinate maps); its car
probabilities are up-sampled bilinearly to the photo's own resolution and only then thresholded, as the
Carvana score is computed. ``Predictor`` and ``predict_files`` share the same preparation, so they give the
same masks for the same files.

``predict_files`` overlaps the stages: DataLoader workers decode (JPEG ``draft``) and resize, the main thread
runs the model under ``inference_mode``, a small thread pool up-samples, composites and writes. Every output
is written atomically; a re-run skips inputs whose outputs all exist; bad inputs get one line each and the run
goes on. Under ``torchrun`` the inputs are split across ranks.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from maskingnet.outputs import OUTPUT_SUFFIXES, EdgeConfig, output_suffix, render, render_all
from maskingnet.utils import parse_size

DEFAULT_SIZE = (512, 512)
ImageLike = str | os.PathLike | Image.Image | np.ndarray


def distributed_rank() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from the torchrun environment; (0, 1, 0) otherwise.

    No process group is needed: ranks share nothing but the file system (see ``maskingnet.submit``).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


def rank_device(device: str) -> str:
    """Under torchrun each rank takes its own GPU; on CPU the ranks share the cores."""
    _rank, world, local = distributed_rank()
    if world == 1 or not device.startswith(("auto", "cuda")) or ":" in device:
        return device
    if torch.cuda.is_available():
        return f"cuda:{local % torch.cuda.device_count()}"
    return "cpu" if device == "auto" else device


def share_cpu_threads() -> None:
    """Several CPU ranks on one machine: give each its share of the cores instead of all of them."""
    _rank, world, _local = distributed_rank()
    if world > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))


def rank_predictor(config) -> Predictor:
    """The :class:`Predictor` of this torchrun rank (its own GPU, or its share of the CPU cores), built from
    any config with ``checkpoint, device, precision, size, tta, backend`` (predict's and submit's)."""
    share_cpu_threads()
    device = rank_device(config.device)
    return Predictor(config.checkpoint, device, config.precision, config.size, config.tta, config.backend)


@dataclass
class Prepared:
    """One image ready for the model: its resized tensor, its own size and, when needed, the full photo."""

    index: int
    tensor: torch.Tensor | None = None
    coords: torch.Tensor | None = None
    size: tuple[int, int] = (0, 0)
    photo: torch.Tensor | None = None
    error: str | None = None


def model_input(image: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    """The whole photo resized to the model's input size, normalised, (3, H, W) (as training resizes)."""
    from maskingnet.data.transforms import to_tensor

    image = image.convert("RGB")
    if image.size != tuple(size):
        image = image.resize(tuple(size), Image.Resampling.BILINEAR)
    return to_tensor(image)


def model_coords(size: tuple[int, int], own_size: tuple[int, int]) -> torch.Tensor:
    """The whole photo's coordinate maps as the model sees them at ``size``, (2, H, W) (as in training)."""
    from maskingnet.data.transforms import resized_coord_maps

    return torch.from_numpy(resized_coord_maps(tuple(size), tuple(own_size)))


def prepare_path(
    path: str | os.PathLike, size: tuple[int, int], need_photo: bool, index: int = 0
) -> Prepared:
    """Decode a file for the model (reduced-scale JPEG decode when the size allows) and, if asked, in full.

    The model input always comes from the reduced-scale decode, even when the full photo is decoded too, so
    a mask does not depend on which outputs were asked for. Raises ``BadInputError`` for unusable files.
    """
    from maskingnet.data.io import image_size, read_image

    small = read_image(path, target_size=size)
    photo = read_image(path) if need_photo else None
    own_size = photo.size if photo is not None else image_size(path)
    return Prepared(
        index=index,
        tensor=model_input(small, size),
        coords=model_coords(size, own_size),
        size=own_size,
        photo=torch.from_numpy(np.array(photo.convert("RGB"))) if photo is not None else None,
    )


def prepare_image(image: Image.Image | np.ndarray, size: tuple[int, int], index: int = 0) -> Prepared:
    """An in-memory image (PIL, or an (H, W) / (H, W, 3|4) array) for the model; taken as it is."""
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
    rgb = image.convert("RGB")
    return Prepared(
        index=index,
        tensor=model_input(rgb, size),
        coords=model_coords(size, rgb.size),
        size=rgb.size,
        photo=torch.from_numpy(np.array(rgb)),
    )


class Predictor:
    """Car probability maps, masks and cut-outs from a checkpoint, for photos as paths, PIL images or arrays.

    >>> predictor = Predictor("runs/real-sample/checkpoints/best.safetensors")
    >>> probs = predictor.predict("car.jpg")        # (H, W) float32 at the photo's own resolution
    >>> predictor.cutout("car.jpg").save("car.png")  # RGBA

    ``checkpoint`` may also be a loaded model or a backend (``maskingnet.inference``). ``size`` (W, H), an int
    or ``"WxH"``: the model's input size; None takes the checkpoint's ``meta["input_size"]``, else 512x512.
    """

    def __init__(
        self,
        checkpoint: Any,
        device: str = "auto",
        precision: str = "auto",
        size: tuple[int, int] | int | str | None = None,
        tta: bool = False,
        backend: str = "auto",
        batch_size: int = 4,
    ) -> None:
        self.backend = _make_backend(checkpoint, device, precision, backend)
        self.size = parse_size(size) or checkpoint_input_size(self.backend) or DEFAULT_SIZE
        self.tta = tta
        self.batch_size = max(1, int(batch_size))

    @property
    def device(self) -> torch.device:
        return torch.device(self.backend.device)

    def prepare(self, image: ImageLike, need_photo: bool = True, index: int = 0) -> Prepared:
        """Decode/convert one image (see ``prepare_path`` and ``prepare_image``)."""
        if isinstance(image, (Image.Image, np.ndarray)):
            return prepare_image(image, self.size, index)
        return prepare_path(image, self.size, need_photo, index)

    def infer(self, batch: torch.Tensor, coords: torch.Tensor | None = None) -> torch.Tensor:
        """Car probabilities (B, h, w) at the model's input size for a (B, 3, h, w) batch.

        ``coords`` (B, 2, h, w): the photos' coordinate maps; None lets the model build whole-input maps.
        """
        from maskingnet.inference import predict_probs

        if self.device.type == "cuda":
            batch = batch.pin_memory()
            coords = coords.pin_memory() if coords is not None else None
        with torch.inference_mode():
            return predict_probs(self.backend, batch, coords, tta=self.tta)

    def infer_prepared(self, items: Sequence[Prepared]) -> torch.Tensor:
        """``infer`` on a batch of prepared images."""
        return self.infer(
            torch.stack([item.tensor for item in items]), torch.stack([item.coords for item in items])
        )

    def upsample(self, probs: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
        """One (h, w) probability map up-sampled to (W, H) = ``size``, as float32 numpy."""
        from maskingnet.inference import upsample_probs

        width, height = size
        return upsample_probs(probs[None].float(), (height, width))[0].numpy().astype(np.float32, copy=False)

    def predict_prepared(self, items: Sequence[Prepared]) -> list[np.ndarray]:
        """Probability maps at each image's own size for already prepared images (one model batch)."""
        probs = self.infer_prepared(items)
        return [self.upsample(probs[i], item.size) for i, item in enumerate(items)]

    def predict(self, image: ImageLike) -> np.ndarray:
        """Car probability map (H, W) float32 at the image's own resolution (EXIF orientation applied)."""
        return self.predict_prepared([self.prepare(image, need_photo=False)])[0]

    def predict_many(
        self, images: Iterable[ImageLike], batch_size: int | None = None
    ) -> Iterator[np.ndarray]:
        """Probability maps for many images, in order, batched ``batch_size`` at a time."""
        size = max(1, batch_size or self.batch_size)
        pending: list[Prepared] = []
        for image in images:
            pending.append(self.prepare(image, need_photo=False))
            if len(pending) == size:
                yield from self.predict_prepared(pending)
                pending = []
        if pending:
            yield from self.predict_prepared(pending)

    def mask(self, image: ImageLike, threshold: float = 0.5) -> np.ndarray:
        """Boolean car mask (H, W) at the image's own resolution."""
        return self.predict(image) > threshold

    def cutout(
        self,
        image: ImageLike,
        threshold: float = 0.5,
        soft_edges: bool = False,
        background: tuple[int, int, int] | None = None,
    ) -> Image.Image:
        """The car cut out: RGBA on transparency, or RGB on ``background`` (e.g. (255, 255, 255))."""
        item = self.prepare(image, need_photo=True)
        probs = self.predict_prepared([item])[0]
        edges = EdgeConfig(threshold=threshold, soft=soft_edges)
        photo = item.photo.numpy()
        if background is None:
            return render("cutout", photo, probs, edges)
        return render("white", photo, probs, edges, background=background)


def _make_backend(checkpoint: Any, device: str, precision: str, backend: str) -> Any:
    from maskingnet import inference

    if isinstance(checkpoint, torch.nn.Module):
        return inference.TorchBackend(checkpoint, device=device, precision=precision)
    if callable(checkpoint) and hasattr(checkpoint, "input_size"):
        return checkpoint
    return inference.load_backend(checkpoint, device=device, precision=precision, backend=backend)


def checkpoint_input_size(backend: Any) -> tuple[int, int] | None:
    """The input size the checkpoint was trained at, (W, H), if it says."""
    size = getattr(backend, "input_size", None)
    if size is None:
        size = (getattr(backend, "meta", None) or {}).get("input_size")
    return parse_size(list(size)) if size else None


class PathDataset(torch.utils.data.Dataset):
    """Decodes files for the model in DataLoader workers; a bad file becomes an item with ``error`` set."""

    def __init__(self, paths: Sequence[Path], size: tuple[int, int], need_photo: bool) -> None:
        self.paths = list(paths)
        self.size = size
        self.need_photo = need_photo

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Prepared:
        from maskingnet.data.io import BadInputError

        path = self.paths[index]
        try:
            return prepare_path(path, self.size, self.need_photo, index)
        except BadInputError as error:
            return Prepared(index=index, error=str(error))
        except Exception as error:  # noqa: BLE001 - any undecodable file is reported, never fatal
            return Prepared(index=index, error=f"{path}: {type(error).__name__}: {error}")


def _as_is(item: Prepared) -> Prepared:
    return item


def default_workers() -> int:
    """Decoding workers: half the cores, at most 4 (the model and the writers need the rest)."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def iterate_prepared(
    paths: Sequence[Path], size: tuple[int, int], need_photo: bool, workers: int | None
) -> Iterator[Prepared]:
    """Prepared items in input order, decoded ahead by ``workers`` processes (0: in this process)."""
    if not paths:
        return iter(())
    workers = default_workers() if workers is None else max(0, workers)
    loader = torch.utils.data.DataLoader(
        PathDataset(paths, size, need_photo),
        batch_size=None,
        shuffle=False,
        num_workers=min(workers, len(paths)),
        collate_fn=_as_is,
        prefetch_factor=4 if workers else None,
    )
    return iter(loader)


def batched_good(
    items: Iterable[Prepared], batch_size: int, on_error: Callable[[Prepared], None]
) -> Iterator[list[Prepared]]:
    """Group decodable items into model batches; bad ones go to ``on_error`` as they come."""
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


def is_earlier_output(path: Path, out: Path) -> bool:
    """A file in the output folder named like one of our outputs: never an input (the output folder may
    lie inside, or be, an input folder)."""
    suffixes = (*OUTPUT_SUFFIXES.values(), output_suffix("white", (0, 0, 0)))
    return path.name.endswith(suffixes) and path.resolve().is_relative_to(out.resolve())


def output_stems(files: Sequence[Path]) -> dict[Path, str]:
    """Output name stem per input: its own stem, or stem~hash when two inputs share a stem (no overwrites).

    The hash is of the resolved path, so names are stable across runs over the same inputs.
    """
    counts = Counter(path.stem.casefold() for path in files)
    stems = {}
    for path in files:
        stem = path.stem
        if counts[stem.casefold()] > 1:
            stem = f"{stem}~{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
        stems[path] = stem
    return stems


@dataclass
class PredictConfig:
    """Options of ``maskingnet predict`` (see ``maskingnet predict --help``)."""

    checkpoint: Any
    inputs: Sequence[str | os.PathLike]
    out: Path
    save: tuple[str, ...] = ("mask", "cutout")
    size: tuple[int, int] | None = None
    batch_size: int = 4
    workers: int | None = None
    device: str = "auto"
    precision: str = "auto"
    backend: str = "auto"
    tta: bool = False
    threshold: float = 0.5
    background: tuple[int, int, int] = (255, 255, 255)
    soft_edges: bool = False
    overwrite: bool = False
    recursive: bool = True
    progress: bool = True


@dataclass
class PredictSummary:
    """What a predict run did; ``failed`` counts unusable inputs (with one line each in ``problems``)."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0


def output_paths(config: PredictConfig, stem: str) -> list[Path]:
    return [Path(config.out) / f"{stem}{output_suffix(kind, config.background)}" for kind in config.save]


def stale_temp_target(name: str) -> tuple[str, str] | None:
    """(stem, suffix) of the output an ``atomic_save`` temp file (``.<stem>.<pid>.tmp<suffix>``) was for."""
    if not name.startswith("."):
        return None
    head, marker, suffix = name.rpartition(".tmp")
    stem, dot, pid = head[1:].rpartition(".")
    if not marker or not dot or not pid.isdigit():
        return None
    return stem, suffix


def remove_stale_temps(out: Path, targets: Iterable[Path]) -> None:
    """Delete temp files that a killed run left behind for these outputs."""
    wanted = {(target.stem, target.suffix) for target in targets}
    if not out.is_dir() or not wanted:
        return
    for entry in out.iterdir():
        if stale_temp_target(entry.name) in wanted:
            entry.unlink(missing_ok=True)


def save_options(path: Path) -> dict[str, Any]:
    """JPEG at quality 95; PNG at zlib level 3 (a third of the time of the default, a few % larger)."""
    if path.suffix.lower() in (".jpg", ".jpeg"):
        return {"quality": 95}
    return {"compress_level": 3}


def write_outputs(config: PredictConfig, item: Prepared, probs: np.ndarray, targets: Sequence[Path]) -> None:
    """Render and atomically write every requested output of one image."""
    from maskingnet.utils import atomic_save

    edges = EdgeConfig(threshold=config.threshold, soft=config.soft_edges)
    photo = item.photo.numpy() if item.photo is not None else None
    images = render_all(config.save, photo, probs, edges, background=config.background)
    for kind, target in zip(config.save, targets, strict=True):
        image, options = images[kind], save_options(target)
        atomic_save(target, lambda tmp, image=image, options=options: image.save(tmp, **options))


def _say(line: str) -> None:
    """One line on stderr, above the progress bar."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


def predict_files(config: PredictConfig, report: Callable[[str], None] = _say) -> PredictSummary:
    """Predict every image under ``config.inputs`` into ``config.out``; see the module docstring."""
    from tqdm import tqdm

    from maskingnet.data.io import list_images

    started = time.perf_counter()
    summary = PredictSummary()
    files, problems = list_images([str(item) for item in config.inputs], recursive=config.recursive)
    files = [path for path in files if not is_earlier_output(path, Path(config.out))]
    rank, world, _local = distributed_rank()
    for line in problems if rank == 0 else []:  # every rank sees them; one reports
        summary.problems.append(line)
        summary.failed += 1
        report(line)
    stems = output_stems(files)
    mine = files[rank::world]
    todo = [
        path
        for path in mine
        if config.overwrite or not all(p.exists() for p in output_paths(config, stems[path]))
    ]
    summary.skipped = len(mine) - len(todo)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out, [p for path in todo for p in output_paths(config, stems[path])])
    if not todo:
        summary.seconds = time.perf_counter() - started
        return summary

    predictor = rank_predictor(config)
    need_photo = any(kind != "mask" for kind in config.save)
    items = iterate_prepared(todo, predictor.size, need_photo, config.workers)
    bar = tqdm(total=len(todo), unit="img", disable=not config.progress, file=sys.stderr, dynamic_ncols=True)

    def fail(item: Prepared) -> None:
        summary.failed += 1
        summary.problems.append(item.error or "")
        report(item.error or "")
        bar.update(1)

    def finish(item: Prepared, probs_small: torch.Tensor) -> None:
        path = todo[item.index]
        write_outputs(
            config, item, predictor.upsample(probs_small, item.size), output_paths(config, stems[path])
        )

    pending: deque[tuple[Prepared, Future]] = deque()

    def settle(limit: int) -> None:
        while len(pending) > limit:
            item, future = pending.popleft()
            try:
                future.result()
                summary.done += 1
                bar.update(1)
            except OSError as error:
                item.error = f"{todo[item.index]}: cannot write outputs: {error}"
                fail(item)

    writers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=writers, thread_name_prefix="maskingnet-write") as pool:
        for batch in batched_good(items, max(1, config.batch_size), fail):
            probs = predictor.infer_prepared(batch)
            for i, item in enumerate(batch):
                item.tensor = item.coords = None
                pending.append((item, pool.submit(finish, item, probs[i].clone())))
            settle(2 * writers + config.batch_size)
        settle(0)
    bar.close()
    summary.seconds = time.perf_counter() - started
    return summary
