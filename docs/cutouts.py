"""Make docs/cutouts.png: real Carvana photos, their cut-outs and white-background versions, side by side.

    .venv/bin/python docs/cutouts.py runs/real-sample/checkpoints/best.safetensors \
        ../shared/data/carvana-sample --out docs/cutouts.png

Picks photos of cars that the checkpoint's validation split held out when its metadata names them
(``meta["split"]["val_cars"]``), else the given ``--cars``.
Each row: photo | cut-out on a checkerboard | on white.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from maskingnet.outputs import EdgeConfig, render
from maskingnet.predict import Predictor
from maskingnet.utils import atomic_save

CELL_WIDTH = 480


def checkerboard(size: tuple[int, int], square: int = 12) -> Image.Image:
    """The usual grey checkerboard that shows transparency."""
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width]
    light = ((xs // square + ys // square) % 2).astype(bool)
    board = np.where(light[..., None], 235, 200).astype(np.uint8)
    return Image.fromarray(np.repeat(board, 3, axis=2))


def shrink(image: Image.Image) -> Image.Image:
    height = round(image.height * CELL_WIDTH / image.width)
    return image.resize((CELL_WIDTH, height), Image.Resampling.LANCZOS)


def figure_row(predictor: Predictor, path: Path, soft_edges: bool) -> list[Image.Image]:
    """Photo, cut-out on a checkerboard, photo on white; all at cell width."""
    item = predictor.prepare(path, need_photo=True)
    probs = predictor.predict_prepared([item])[0]
    photo = item.photo.numpy()
    edges = EdgeConfig(soft=soft_edges)
    cutout = shrink(render("cutout", photo, probs, edges))
    board = checkerboard(cutout.size)
    board.paste(cutout, (0, 0), cutout)
    return [shrink(Image.fromarray(photo)), board, shrink(render("white", photo, probs, edges))]


def compose(rows: list[list[Image.Image]], titles: list[str]) -> Image.Image:
    """A grid with a title strip on top."""
    gap, strip = 6, 26
    height = sum(row[0].height for row in rows) + gap * (len(rows) + 1) + strip
    width = CELL_WIDTH * len(titles) + gap * (len(titles) + 1)
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=16)
    for column, title in enumerate(titles):
        draw.text((gap + column * (CELL_WIDTH + gap) + 8, 4), title, fill=(40, 40, 40), font=font)
    top = strip + gap
    for row in rows:
        for column, image in enumerate(row):
            sheet.paste(image, (gap + column * (CELL_WIDTH + gap), top))
        top += row[0].height + gap
    return sheet


def pick_photos(sample: Path, cars: list[str], angles: list[str]) -> list[Path]:
    return [sample / "train" / f"{car}_{angle}.jpg" for car, angle in zip(cars, angles, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("sample", type=Path, help="the Carvana-layout folder (train/*.jpg)")
    parser.add_argument("--out", type=Path, default=Path("docs/cutouts.png"))
    parser.add_argument("--cars", nargs="*", default=None, help="car ids (default: held-out cars)")
    parser.add_argument("--angles", nargs="*", default=["03", "07", "12"])
    parser.add_argument("--soft-edges", action="store_true")
    parser.add_argument("--tta", action="store_true")
    args = parser.parse_args()
    predictor = Predictor(args.checkpoint, tta=args.tta)
    meta = predictor.backend.meta
    held_out = meta.get("split", {}).get("val_cars") or meta.get("val_cars") or []
    cars = args.cars or sorted(held_out)[: len(args.angles)]
    if len(cars) < len(args.angles):
        parser.error("give --cars: the checkpoint does not name its held-out cars")
    photos = pick_photos(args.sample, cars, args.angles)
    rows = [figure_row(predictor, path, args.soft_edges) for path in photos]
    soft = " --soft-edges" if args.soft_edges else ""
    titles = ["photo (1918x1280, held-out car)", f"--save cutout{soft} (RGBA)", f"--save white{soft}"]
    sheet = compose(rows, titles)
    atomic_save(args.out, lambda tmp: sheet.save(tmp, optimize=True))
    print(f"{args.out}: {len(rows)} rows from {', '.join(path.name for path in photos)}")


if __name__ == "__main__":
    main()
