"""Makes docs/listing.png: four angles of one held-out car on a 400x300 canvas, with ``--canvas`` alone (top)
and with ``--listing`` (bottom), cut out by the bundled model.

    python docs/listing.py ../shared/data/carvana-sample [docs/listing.png]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from maskingnet.models.bundled import resolve_model
from maskingnet.predict import PredictConfig, predict_files

CAR, ANGLES, CANVAS = "1adaeb44f109", ("01", "05", "09", "13"), (400, 300)


def cutouts(photos: list[Path], out: Path, listing: bool) -> list[Image.Image]:
    config = PredictConfig(
        model=resolve_model(None),
        inputs=photos,
        out=out,
        save=("cutout",),
        canvas=CANVAS,
        crop_to_car=True,
        listing=listing,
        progress=False,
    )
    predict_files(config, report=lambda line: None)
    return [Image.open(out / f"{photo.stem}_cutout.png") for photo in photos]


def on_grey(cutout: Image.Image) -> Image.Image:
    tile = Image.new("RGBA", cutout.size, (236, 236, 236, 255))
    tile.alpha_composite(cutout)
    draw = ImageDraw.Draw(tile)
    draw.rectangle([0, 0, cutout.size[0] - 1, cutout.size[1] - 1], outline=(160, 160, 160, 255))
    return tile


def main(sample: Path, target: Path) -> None:
    photos = [sample / "train" / f"{CAR}_{angle}.jpg" for angle in ANGLES]
    label_height, gap = 28, 8
    sheet = Image.new("RGBA", (len(photos) * (CANVAS[0] + gap), 2 * (CANVAS[1] + label_height)), "white")
    draw = ImageDraw.Draw(sheet)
    with tempfile.TemporaryDirectory() as tmp:
        for row, listing in enumerate((False, True)):
            top = row * (CANVAS[1] + label_height)
            title = (
                "--canvas 400x300 --listing: one scale, one baseline"
                if listing
                else ("--canvas 400x300: each photo fitted on its own")
            )
            draw.text((4, top + 8), title, fill="black")
            for column, cutout in enumerate(cutouts(photos, Path(tmp) / str(row), listing)):
                sheet.paste(on_grey(cutout), (column * (CANVAS[0] + gap), top + label_height))
    sheet.convert("RGB").save(target, optimize=True)


if __name__ == "__main__":
    main(
        Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).with_name("listing.png")
    )
