"""``make demo``: the whole project in one short, readable run on built-in synthetic data.

Each step is one library call, so the sequence reads like a tutorial and each step can grow on its own.
Today it makes a small synthetic Carvana set and a gallery of its photos with their masks laid over them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

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

    def scaled(self) -> DemoConfig:
        """The configuration actually run: ``quick`` means 2 cars at 240x160."""
        if not self.quick:
            return self
        return DemoConfig(self.out, min(self.cars, 2), (240, 160), self.seed, self.workers, quick=True)


def run_demo(config: DemoConfig, log=print) -> dict:
    """Run the demo; returns a summary with the paths of what it wrote."""
    from maskingnet.data.synth import generate

    config = config.scaled()
    out = Path(config.out)
    data = out / "data"
    width, height = config.size
    log(f"demo: writing {config.cars} synthetic cars x 16 angles at {width}x{height} to {data}")
    dataset = generate(data, cars=config.cars, size=config.size, seed=config.seed, workers=config.workers)
    gallery = write_gallery(data, out / "gallery.png")
    log(f"demo: gallery of photos with their masks: {gallery}")
    return {"data": str(data), "gallery": str(gallery), "dataset": dataset}


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
