"""Make docs/peer_montage.png: the same held-out photos cut out by maskingnet and by rembg, beside the truth.

    .venv/bin/python docs/peer_montage.py runs/peer/bench.json ../shared/data/carvana-sample \
        --out docs/peer_montage.png

Needs ``make peer``. Takes the photos from the peer section of a ``maskingnet bench --peer rembg`` run:
rembg's worst photo, maskingnet's worst and the photo nearest both tools' medians (or ``--photos``), runs
both tools on them as the section does, and draws one row per photo: the photo, then each tool's cut-out on
a checkerboard with its errors tinted (red: background kept as car, blue: car dropped), then the true
cut-out. Each row's zoom column repeats the region where the two tools disagree most.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from maskingnet.bench.peer import (
    ALPHA_THRESHOLD,
    Tool,
    cut_out,
    maskingnet_tool,
    rembg_or_reason,
    rembg_tool,
)
from maskingnet.data.carvana import Record, scan
from maskingnet.data.io import read_mask
from maskingnet.data.metrics import dice
from maskingnet.utils import atomic_save

CELL_WIDTH = 420
ZOOM = 300  # the side of the zoomed square, in photo pixels
RED, BLUE = np.array([230, 40, 40]), np.array([40, 90, 240])


def checkerboard(height: int, width: int, square: int = 24) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    light = ((xs // square + ys // square) % 2).astype(bool)
    return np.repeat(np.where(light[..., None], 235, 200).astype(np.uint8), 3, axis=2)


def shown(photo: np.ndarray, car: np.ndarray, truth: np.ndarray | None) -> np.ndarray:
    """The car over a checkerboard; where ``truth`` is given, its errors tinted."""
    image = np.where(car[..., None], photo, checkerboard(*car.shape)).astype(np.float32)
    if truth is not None:
        for wrong, colour in ((car & ~truth, RED), (~car & truth, BLUE)):
            image[wrong] = 0.35 * image[wrong] + 0.65 * colour
    return image.astype(np.uint8)


def disagreement_box(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int, int]:
    """The ZOOM x ZOOM square holding the most pixels where ``a`` and ``b`` differ."""
    differ = (a != b).astype(np.float32)
    height, width = differ.shape
    sums = np.pad(differ.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    windows = sums[ZOOM:, ZOOM:] - sums[:-ZOOM, ZOOM:] - sums[ZOOM:, :-ZOOM] + sums[:-ZOOM, :-ZOOM]
    top, left = np.unravel_index(int(np.argmax(windows)), windows.shape)
    return int(left), int(top), int(left) + ZOOM, int(top) + ZOOM


def row(record: Record, cars: dict[str, np.ndarray]) -> tuple[list[Image.Image], dict[str, float]]:
    with Image.open(record.image_path) as image:
        photo = np.asarray(image.convert("RGB"))
    truth = read_mask(record.mask_path)
    scores = {name: dice(car, truth) for name, car in cars.items()}
    box = disagreement_box(cars["maskingnet"], cars["rembg_u2netp"])
    panels = [
        photo,
        shown(photo, cars["maskingnet"], truth),
        shown(photo, cars["rembg_u2netp"], truth),
        shown(photo, truth, None),
    ]
    cells = [_cell(panel) for panel in panels]
    zoom = [Image.fromarray(panel).crop(box) for panel in panels[1:3]]
    cells.append(_pair(zoom, box))
    for cell in cells[:-1]:
        ImageDraw.Draw(cell).rectangle(_scaled(box, photo.shape[1]), outline=(255, 200, 0), width=2)
    return cells, scores


def _cell(array: np.ndarray) -> Image.Image:
    image = Image.fromarray(array)
    return image.resize(
        (CELL_WIDTH, round(image.height * CELL_WIDTH / image.width)), Image.Resampling.LANCZOS
    )


def _scaled(box: tuple[int, int, int, int], width: int) -> tuple[int, ...]:
    return tuple(round(v * CELL_WIDTH / width) for v in box)


def _pair(crops: list[Image.Image], box: tuple[int, int, int, int]) -> Image.Image:
    """The zoomed square of maskingnet (left) and rembg (right), side by side, at cell height."""
    side = round(CELL_WIDTH * 1280 / 1918)
    half = (CELL_WIDTH - 4) // 2
    pair = Image.new("RGB", (CELL_WIDTH, side), (255, 255, 255))
    for index, crop in enumerate(crops):
        pair.paste(
            crop.resize((half, half), Image.Resampling.NEAREST), (index * (half + 4), (side - half) // 2)
        )
    return pair


def compose(rows: list[list[Image.Image]], titles: list[str], labels: list[str]) -> Image.Image:
    gap, strip, label = 6, 26, 22
    height = sum(r[0].height + label for r in rows) + gap * (len(rows) + 1) + strip
    width = CELL_WIDTH * len(titles) + gap * (len(titles) + 1)
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=15)
    for column, title in enumerate(titles):
        draw.text((gap + column * (CELL_WIDTH + gap) + 6, 5), title, fill=(40, 40, 40), font=font)
    top = strip + gap
    for cells, text in zip(rows, labels, strict=True):
        draw.text((gap + 6, top + 2), text, fill=(40, 40, 40), font=font)
        top += label
        for column, cell in enumerate(cells):
            sheet.paste(cell, (gap + column * (CELL_WIDTH + gap), top))
        top += cells[0].height + gap
    return sheet


def pick(section: dict, count: int = 3) -> list[str]:
    """rembg's worst photo, maskingnet's worst, and the one nearest both tools' medians."""
    theirs, ours = section["rembg_u2netp"]["dice_per_photo"], section["maskingnet"]["dice_per_photo"]
    chosen = [min(theirs, key=theirs.get), min(ours, key=ours.get)]
    typical = sorted(
        theirs,
        key=lambda n: (
            abs(theirs[n] - section["rembg_u2netp"]["median_dice"])
            + abs(ours[n] - section["maskingnet"]["median_dice"])
        ),
    )
    chosen += [name for name in typical if name not in chosen]
    return list(dict.fromkeys(chosen))[:count]


def run(tool: Tool, records: list[Record], work: Path) -> dict[str, np.ndarray]:
    out, _, _ = cut_out(tool, records, work)
    cars = {}
    for record in records:
        with Image.open(tool.cutout(out, record.image_path)) as image:
            cars[record.image_path.name] = np.asarray(image.getchannel("A")) >= ALPHA_THRESHOLD
    return cars


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_json", type=Path, help="bench.json of a 'maskingnet bench --peer rembg' run")
    parser.add_argument("sample", type=Path, help="the Carvana-layout folder (train/*.jpg)")
    parser.add_argument("--out", type=Path, default=Path("docs/peer_montage.png"))
    parser.add_argument("--photos", nargs="*", default=None, help="photo file names (default: picked)")
    args = parser.parse_args()
    found = rembg_or_reason()
    if isinstance(found, str):
        parser.error(found)
    section = json.loads(args.bench_json.read_text())["peer"]
    names = args.photos or pick(section)
    records = [r for r in scan(args.sample).records if r.image_path.name in names]
    records.sort(key=lambda r: names.index(r.image_path.name))
    with tempfile.TemporaryDirectory(prefix="peer-montage-") as tmp:
        ours = run(maskingnet_tool(), records, Path(tmp))
        theirs = run(rembg_tool(*found), records, Path(tmp))
    rows, labels = [], []
    for record in records:
        cells, scores = row(
            record,
            {"maskingnet": ours[record.image_path.name], "rembg_u2netp": theirs[record.image_path.name]},
        )
        rows.append(cells)
        labels.append(
            f"{record.image_path.name}: Dice maskingnet {scores['maskingnet']:.4f}, "
            f"rembg u2netp {scores['rembg_u2netp']:.4f}"
        )
    titles = [
        "photo (held-out car, 1918x1280)",
        "maskingnet predict",
        "rembg p -m u2netp",
        "truth (Carvana mask)",
        f"zoom ({ZOOM}x{ZOOM} px): maskingnet | rembg",
    ]
    sheet = compose(rows, titles, labels)
    atomic_save(args.out, lambda tmp: sheet.save(tmp, optimize=True))
    print(f"{args.out}: {', '.join(labels)}")


if __name__ == "__main__":
    main()
