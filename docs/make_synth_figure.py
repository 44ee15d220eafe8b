"""Make docs/synth_vs_real.png: real Carvana photos above synthetic ones, at the same angles.

    .venv/bin/python docs/make_synth_figure.py [--real DIR] [--out PNG]

``--real`` defaults to ../shared/data/carvana-sample, ``--out`` to docs/synth_vs_real.png.

The synthetic photos are the cars ``maskingnet synth --seed 0`` makes (same ids, same pixels at that size).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from maskingnet.data.synth import make_specs
from maskingnet.data.synth_render import render_view
from maskingnet.utils import atomic_save

REPO = Path(__file__).resolve().parents[1]
ANGLES = (1, 3, 5, 7)
ROWS = 2
TILE = (480, 320)


def real_tiles(root: Path) -> list[list[Image.Image]]:
    cars = sorted({p.stem[:12] for p in (root / "train").glob("*_01.jpg")})
    picks = [cars[i * len(cars) // (ROWS * len(ANGLES))] for i in range(ROWS * len(ANGLES))]
    return [
        [
            Image.open(root / "train" / f"{picks[r * len(ANGLES) + c]}_{a:02d}.jpg")
            .convert("RGB")
            .resize(TILE)
            for c, a in enumerate(ANGLES)
        ]
        for r in range(ROWS)
    ]


def synthetic_tiles(seed: int = 0) -> list[list[Image.Image]]:
    specs = make_specs(ROWS * len(ANGLES), seed=seed)
    return [
        [
            render_view(specs[r * len(ANGLES) + c].seed, a, (TILE[0] * 2, TILE[1] * 2))[0].resize(TILE)
            for c, a in enumerate(ANGLES)
        ]
        for r in range(ROWS)
    ]


def figure(real: list[list[Image.Image]], synthetic: list[list[Image.Image]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rows = [("real Carvana", row) for row in real] + [("synthetic", row) for row in synthetic]
    fig = Figure(figsize=(4 * len(ANGLES), 2.75 * len(rows)), dpi=90)
    axes = fig.subplots(len(rows), len(ANGLES), squeeze=False)
    for r, (label, tiles) in enumerate(rows):
        for c, tile in enumerate(tiles):
            ax = axes[r][c]
            ax.imshow(np.asarray(tile))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"angle {ANGLES[c]:02d}", fontsize=13)
            if c == 0:
                ax.set_ylabel(label, fontsize=13)
    fig.tight_layout(pad=0.4)
    atomic_save(out, lambda tmp: fig.savefig(tmp, format="png"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=REPO.parent / "shared" / "data" / "carvana-sample")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "synth_vs_real.png")
    args = parser.parse_args()
    figure(real_tiles(args.real), synthetic_tiles(), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
