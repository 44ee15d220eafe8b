"""Synthetic Carvana-format data: studio photos of simple 3-D cars, with exact masks, in Kaggle's layout.

``generate(out, cars, ...)`` writes what the Kaggle Carvana download holds::

    train/<id>_<nn>.jpg            16 angles per car, 12-hex ids, _01 (front) .. _16
    train_masks/<id>_<nn>_mask.gif palette mode, pixel values 0/1
    train_masks.csv                img,rle_mask (Kaggle RLE, row-major, 1-indexed start length pairs)
    metadata.csv                   id,year,make,model,trim1,trim2
    test/<id>_<nn>.jpg             test cars, no masks
    sample_submission.csv          img,rle_mask with Kaggle's "1 1" placeholder

Every car, and every file, is a pure function of ``(seed, car index)``: the same seed gives byte-identical
files whatever the number of workers.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from maskingnet.data.rle import rle_encode
from maskingnet.data.synth_render import render_car
from maskingnet.utils import atomic_write, parse_size
from maskingnet.utils.progress import progress_bar

MAX_SIDE = 8192  # the renderer holds a few full-size layers at twice the size in memory
KAGGLE_PLACEHOLDER_RLE = "1 1"  # what every row of Kaggle's Carvana sample_submission.csv held
MAKES = {
    "Tessera": ["Arc", "Vela", "Norte"],
    "Halden": ["Sprint", "Tour", "Ridge"],
    "Okapi": ["One", "Strada", "Loop"],
    "Marlow": ["GT", "Coupe", "Estate"],
}
TRIMS = ["Base", "LX", "EX", "Sport", "Limited", "SE", "Touring"]


@dataclass(frozen=True)
class CarSpec:
    """What one generated car is: its Kaggle-style id, metadata and the seed its renderings come from."""

    car_id: str
    seed: int
    year: int
    make: str
    model: str
    trim1: str
    trim2: str
    split: str  # "train" or "test"


def make_specs(cars: int, test_cars: int = 0, seed: int = 0) -> list[CarSpec]:
    """The cars of one data set, train first, then test. Ids are unique 12-hex strings."""
    root = np.random.default_rng([seed, 0xC0FFEE])
    specs: list[CarSpec] = []
    seen: set[str] = set()
    for index in range(cars + test_cars):
        rng = np.random.default_rng([seed, index])
        car_id = _unique_hex_id(root, seen)
        make = sorted(MAKES)[int(rng.integers(len(MAKES)))]
        specs.append(
            CarSpec(
                car_id=car_id,
                seed=int(rng.integers(2**31)),
                year=int(rng.integers(2005, 2018)),
                make=make,
                model=MAKES[make][int(rng.integers(len(MAKES[make])))],
                trim1=TRIMS[int(rng.integers(len(TRIMS)))],
                trim2=TRIMS[int(rng.integers(len(TRIMS)))],
                split="train" if index < cars else "test",
            )
        )
    return specs


def _unique_hex_id(rng: np.random.Generator, seen: set[str]) -> str:
    while True:
        car_id = "".join(f"{b:02x}" for b in rng.integers(0, 256, size=6))
        if car_id not in seen:
            seen.add(car_id)
            return car_id


def mask_to_gif_bytes(mask: np.ndarray) -> bytes:
    """A mask as Kaggle stored it: GIF, palette mode, pixel values 0/1, palette black/white."""
    image = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    image.putpalette([0, 0, 0, 255, 255, 255])
    buffer = io.BytesIO()
    image.save(buffer, format="GIF")
    return buffer.getvalue()


def image_to_jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _write_bytes(path: Path, data: bytes) -> None:
    with atomic_write(path) as handle:
        handle.write(data)


def _render_car_files(job: tuple[CarSpec, tuple[int, int], str]) -> list[tuple[str, str]]:
    """Render and write the 16 views of one car; returns ``(img name, rle)`` rows (rle empty for test)."""
    spec, size, out = job
    root = Path(out)
    rows = []
    for angle, image, mask in render_car(spec.seed, size):
        name = f"{spec.car_id}_{angle:02d}"
        _write_bytes(root / spec.split / f"{name}.jpg", image_to_jpeg_bytes(image))
        if spec.split == "train":
            _write_bytes(root / "train_masks" / f"{name}_mask.gif", mask_to_gif_bytes(mask))
            rows.append((f"{name}.jpg", rle_encode(mask)))
        else:
            rows.append((f"{name}.jpg", ""))
    return rows


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    with atomic_write(path, mode="w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def synth_size(text: str) -> tuple[int, int]:
    """``--size`` of ``maskingnet synth``: ``"480x320"`` -> ``(480, 320)`` (both sides given), within the
    sizes a synthetic set may have; ``ValueError`` with a one-line reason otherwise."""
    size = parse_size(text, square=False)
    if size is None:
        raise ValueError("size must be WxH, e.g. 1918x1280")
    _check_size(size)
    return size


def _check_size(size: tuple[int, int]) -> None:
    width, height = size
    if width < 32 or height < 32:
        raise ValueError(f"size must be at least 32x32, not {width}x{height}")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise ValueError(f"size must be at most {MAX_SIDE}x{MAX_SIDE}, not {width}x{height}")


def generate(
    out: str | os.PathLike,
    cars: int,
    test_cars: int = 0,
    size: tuple[int, int] = (1918, 1280),
    seed: int = 0,
    workers: int | None = None,
    progress: bool = False,
) -> dict:
    """Write a synthetic Carvana data set of ``cars`` train and ``test_cars`` test cars under ``out``.

    ``size`` is ``(W, H)``. ``workers`` processes render cars in parallel (default: all CPUs; 1 renders
    in this process). ``progress`` shows a bar on stderr. Returns a summary: counts, paths, size, seed
    and the wall time in seconds.
    """
    started = time.perf_counter()
    if cars < 1:
        raise ValueError(f"cars must be at least 1, not {cars}")
    if test_cars < 0:
        raise ValueError(f"test_cars must be 0 or more, not {test_cars}")
    size = (int(size[0]), int(size[1]))
    _check_size(size)
    root = Path(out)
    specs = make_specs(cars, test_cars, seed)
    jobs = [(spec, size, str(root)) for spec in specs]
    rows_per_car = _run_jobs(jobs, workers, progress)
    by_split = {"train": [], "test": []}
    for spec, rows in zip(specs, rows_per_car, strict=True):
        by_split[spec.split].extend(rows)
    train_rows = by_split["train"]
    test_rows = [(img, KAGGLE_PLACEHOLDER_RLE) for img, _ in by_split["test"]]
    _write_csv(root / "train_masks.csv", ["img", "rle_mask"], train_rows)
    _write_csv(root / "sample_submission.csv", ["img", "rle_mask"], test_rows)
    _write_csv(
        root / "metadata.csv",
        ["id", "year", "make", "model", "trim1", "trim2"],
        [(s.car_id, f"{s.year:.1f}", s.make, s.model, s.trim1, s.trim2) for s in specs],
    )
    return {
        "out": str(root),
        "train_cars": cars,
        "test_cars": test_cars,
        "train_images": len(train_rows),
        "test_images": len(test_rows),
        "size": list(size),
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 2),
    }


def _run_jobs(jobs: list, workers: int | None, progress: bool) -> list[list[tuple[str, str]]]:
    """Render the cars, in order, in ``workers`` processes; one progress step per car."""
    if workers is None:
        workers = os.cpu_count() or 1
    workers = max(1, min(int(workers), len(jobs)))
    bar = progress_bar(len(jobs), desc="synth", unit="car", enabled=progress)
    with bar:
        if workers == 1:
            return [_tick(bar, _render_car_files(job)) for job in jobs]
        with ProcessPoolExecutor(max_workers=workers) as pool:
            return [_tick(bar, rows) for rows in pool.map(_render_car_files, jobs)]


def _tick(bar, rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    bar.update(1)
    return rows
