"""RLE speed on full-size 1918x1280 masks: encode and decode, best of several runs, in milliseconds.

Uses the real Carvana sample's GIF masks when present (``../shared/data/carvana-sample``), else a synthetic
ellipse of the same size. Run: ``python benchmarks/bench_rle.py [--masks N] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
from PIL import Image

from maskingnet.data.rle import rle_decode, rle_encode

REAL_MASKS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "carvana-sample" / "train_masks"


def load_masks(count: int) -> tuple[list[np.ndarray], str]:
    paths = sorted(REAL_MASKS.glob("*.gif"))[:count]
    if paths:
        masks = []
        for path in paths:
            with Image.open(path) as gif:
                masks.append(np.asarray(gif) != 0)
        return masks, f"{len(masks)} real Carvana masks"
    yy, xx = np.mgrid[:1280, :1918]
    ellipse = ((xx - 959) / 800) ** 2 + ((yy - 700) / 350) ** 2 <= 1
    return [ellipse], "1 synthetic ellipse mask"


def best_ms(function, masks: list, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for item in masks:
            function(item)
        best = min(best, (time.perf_counter() - start) / len(masks))
    return best * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--masks", type=int, default=20, help="how many real masks to time")
    parser.add_argument("--repeat", type=int, default=5, help="best of this many passes")
    args = parser.parse_args()
    masks, source = load_masks(args.masks)
    shape = masks[0].shape
    rles = [rle_encode(mask) for mask in masks]
    for mask, rle in zip(masks, rles, strict=True):
        assert np.array_equal(rle_decode(rle, shape), mask)
    encode = best_ms(rle_encode, masks, args.repeat)
    decode = best_ms(lambda rle: rle_decode(rle, shape), rles, args.repeat)
    tokens = np.mean([len(rle.split()) for rle in rles])
    print(f"RLE on {source}, {shape[1]}x{shape[0]}, {tokens:.0f} tokens each on average")
    print(f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}")
    print(f"encode  {encode:7.2f} ms/mask")
    print(f"decode  {decode:7.2f} ms/mask (with validation)")
    print(f"both    {encode + decode:7.2f} ms/mask")


if __name__ == "__main__":
    main()
