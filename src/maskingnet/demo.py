"""``make demo``: the whole project in one short, readable run.

Each step is one library call, so the sequence reads like a tutorial and each step can grow on its own:
real photos (``photos``, when given) or synthetic ones cut out with the bundled model, no training needed;
then a small synthetic Carvana set, a gallery of its photos with their masks, a small model trained on it,
evaluated, and its val photos cut out.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from maskingnet.data.synth import generate
from maskingnet.evaluate import evaluate
from maskingnet.models import read_config, resolve_model
from maskingnet.predict import PredictConfig, predict_files
from maskingnet.train import TrainConfig, train
from maskingnet.utils import atomic_save

OVERLAY = (40, 220, 90)
OUTLINE = (255, 230, 0)


@dataclass
class DemoConfig:
    """What the demo runs on. ``quick`` shrinks everything so that the demo takes seconds."""

    out: Path = Path("runs/demo")
    cars: int = 8
    size: tuple[int, int] = (480, 320)
    seed: int = 0
    workers: int | None = None
    quick: bool = False
    epochs: int = 6
    model_width: float = 0.125
    photos: Path | None = None
    bundled_photos: int = 8

    def scaled(self) -> DemoConfig:
        """The configuration actually run: ``quick`` means 2 cars at 240x160."""
        if not self.quick:
            return self
        return dataclasses.replace(self, cars=min(self.cars, 2), size=(240, 160), epochs=1)


def run_demo(config: DemoConfig, log=print) -> dict:
    """Run the demo; returns a summary with the paths of what it wrote."""
    config = config.scaled()
    out = Path(config.out)
    data = out / "data"
    width, height = config.size
    log(f"demo: writing {config.cars} synthetic cars x 16 angles at {width}x{height} to {data}")
    dataset = generate(data, cars=config.cars, size=config.size, seed=config.seed, workers=config.workers)
    photos = pick_photos(Path(config.photos) if config.photos else data / "train", config.bundled_photos)
    bundled = cut_out_with_bundled_model(photos, out / "bundled", log)
    gallery = write_gallery(data, out / "gallery.png")
    log(f"demo: gallery of photos with their masks: {gallery}")
    summary = {"data": str(data), "gallery": str(gallery), "dataset": dataset, "bundled": bundled}
    if config.cars < 2:
        log("demo: training needs 2 cars or more (train and val are split by car); skipping it")
        return summary
    summary["train"] = train_demo_model(config, data, out / "run", log)
    best = Path(summary["train"]["best_checkpoint"])
    summary["evaluate"] = evaluate_demo_model(best, data, out / "eval", log)
    summary["cutouts"] = cut_out_val_photos(best, data, out / "cutouts", log)
    return summary


def pick_photos(folder: Path, count: int) -> list[Path]:
    """Up to ``count`` JPEGs of ``folder``, spread evenly over its sorted list (several cars and angles)."""
    photos = sorted(folder.glob("*.jpg"))
    if not photos:
        raise ValueError(f"{folder}: no .jpg photos to cut out")
    step = max(1, len(photos) // count)
    return photos[::step][:count]


def cut_out_with_bundled_model(photos: list[Path], out: Path, log) -> dict:
    """What a new user gets with no training: the photos cut out by the model in the package."""
    model = resolve_model(None)
    settings = PredictConfig(model, photos, out, save=("cutout", "white"), overwrite=True, progress=False)
    result = predict_files(settings, report=log)
    log(
        f"demo: cut out {result.done} photos with the bundled model {model.stem} "
        f"({result.images_per_second:.1f} img/s, no training): {out}/*_cutout.png and *_white.jpg"
    )
    return {"out": str(out), "done": result.done, "failed": result.failed}


def cut_out_val_photos(checkpoint: Path, data: Path, out: Path, log) -> dict:
    """What a shop gets: the val cars' photos cut out (transparent PNG) and on white, by ``predict_files``."""
    _model_config, meta = read_config(checkpoint)
    cars = (meta.get("split") or {}).get("val_cars") or []
    photos = sorted(path for car in cars for path in (data / "train").glob(f"{car}_*.jpg"))
    settings = PredictConfig(
        checkpoint, photos, out, save=("cutout", "white"), soft_edges=True, overwrite=True, progress=False
    )
    result = predict_files(settings, report=log)
    log(
        f"demo: cut out {result.done} val photos ({result.images_per_second:.1f} img/s): "
        f"{out}/*_cutout.png (transparent) and *_white.jpg"
    )
    return {"out": str(out), "done": result.done, "failed": result.failed}


def train_demo_model(config: DemoConfig, data: Path, run: Path, log) -> dict:
    """A small MaskingNet at half the photo size, split by car; the lr halves every 2 epochs."""
    size = (config.size[0] // 2, config.size[1] // 2)
    where = f"{size[0]}x{size[1]}"
    log(f"demo: training MaskingNet (width {config.model_width}) at {where}, {config.epochs} epochs -> {run}")
    if (run / "config.json").is_file():
        shutil.rmtree(run)  # the previous demo's run: start afresh
    threads = threads_for_a_busy_machine()
    if threads is not None:
        log(f"demo: the CPUs are busy (load {os.getloadavg()[0]:.1f}); training with {threads} thread")
    settings = TrainConfig(
        data=str(data),
        out=str(run),
        model="maskingnet",
        width=config.model_width,
        size=size,
        epochs=config.epochs,
        lr_step=2,
        loss="ce+dice",
        seed=config.seed,
        threads=threads,
    )
    result = train(settings)
    log(
        f"demo: best val Dice {result['best_dice']:.4f} at {where} (epoch {result['best_epoch']}); "
        f"curves: {run / 'curves.png'}"
    )
    return result


def threads_for_a_busy_machine() -> int | None:
    """1 when other work already loads every core: OpenMP threads then wait on each other and a single
    thread trains several times faster (measured while other jobs shared the 2-core build machine)."""
    cores = os.cpu_count() or 1
    return 1 if cores > 1 and os.getloadavg()[0] >= cores else None


def evaluate_demo_model(checkpoint: Path, data: Path, out: Path, log) -> dict:
    """Mean Dice of the val cars at the photos' full size, and the worst cases as a picture."""
    result = evaluate(checkpoint, data, split="val", out=out)
    log(
        f"demo: mean Dice {result['mean_dice']:.4f} on {result['images']} val photos at full size; "
        f"worst cases: {out / 'worst.png'}"
    )
    return result


def write_gallery(
    data: str | os.PathLike,
    path: str | os.PathLike,
    cars: int = 4,
    angles: tuple[int, ...] = (1, 3, 5, 7, 9, 13),
    tile_width: int = 240,
) -> Path:
    """A grid PNG: one row per car, one column per angle, each photo with its mask tinted and outlined."""
    data = Path(data)
    car_ids = sorted({p.stem[:12] for p in (data / "train").glob("*.jpg")})[:cars]
    tiles = [[_overlay_tile(data, car_id, angle, tile_width) for angle in angles] for car_id in car_ids]
    tile_height = tiles[0][0].height if tiles else 1
    sheet = Image.new("RGB", (tile_width * len(angles), tile_height * max(1, len(tiles))), "white")
    for row, row_tiles in enumerate(tiles):
        for column, tile in enumerate(row_tiles):
            sheet.paste(tile, (column * tile_width, row * tile_height))
    path = Path(path)
    atomic_save(path, lambda tmp: sheet.save(tmp, format="PNG"))
    return path


def _overlay_tile(data: Path, car_id: str, angle: int, tile_width: int) -> Image.Image:
    name = f"{car_id}_{angle:02d}"
    photo = Image.open(data / "train" / f"{name}.jpg").convert("RGB")
    truth = np.asarray(Image.open(data / "train_masks" / f"{name}_mask.gif")) > 0
    mask = Image.fromarray((truth * 255).astype(np.uint8), mode="L")
    tile_height = round(photo.height * tile_width / photo.width)
    photo = photo.resize((tile_width, tile_height), Image.BILINEAR)
    mask = mask.resize((tile_width, tile_height), Image.NEAREST)
    tinted = Image.blend(photo, Image.new("RGB", photo.size, OVERLAY), 0.35)
    tile = Image.composite(tinted, photo, mask)
    edge = np.asarray(mask) > np.asarray(mask.filter(ImageFilter.MinFilter(3)))
    pixels = np.asarray(tile).copy()
    pixels[edge] = OUTLINE
    tile = Image.fromarray(pixels)
    ImageDraw.Draw(tile).text((4, 2), name, fill=(0, 0, 0))
    return tile
