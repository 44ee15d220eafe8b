"""RLE speed on full-size 1918x1280 masks: encode and decode, best of several runs, in milliseconds.

Uses the real Carvana sample's GIF masks when present (``--data``, by default
``../shared/data/carvana-sample`` beside the repository), else a synthetic ellipse of the same size. Run:
``python benchmarks/bench_rle.py [--data DIR] [--masks N] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np

from maskingnet.bench.rle import load_masks
from maskingnet.bench.timing import best_ms
from maskingnet.data.rle import rle_decode, rle_encode

REAL_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "carvana-sample"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REAL_SAMPLE, help="Carvana folder with train_masks/")
    parser.add_argument("--masks", type=int, default=20, help="how many real masks to time")
    parser.add_argument("--repeat", type=int, default=5, help="best of this many passes")
    args = parser.parse_args()
    masks, source = load_masks(args.data, args.masks)
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
