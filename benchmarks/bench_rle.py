"""RLE speed on full-size 1918x1280 masks: encode and decode, best of several runs, in milliseconds.

Uses the real Carvana sample's GIF masks when present (``--data``, by default
``../shared/data/carvana-sample`` beside the repository), else a synthetic ellipse of the same size. Run:
``python benchmarks/bench_rle.py [--data DIR] [--masks N] [--repeat R]``: ``maskingnet bench``'s ``rle``
section (:func:`maskingnet.bench.rle.bench_rle`) with its own counts.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

from maskingnet.bench.rle import bench_rle

REAL_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "carvana-sample"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REAL_SAMPLE, help="Carvana folder with train_masks/")
    parser.add_argument("--masks", type=int, default=20, help="how many real masks to time")
    parser.add_argument("--repeat", type=int, default=5, help="best of this many passes")
    args = parser.parse_args()
    result = bench_rle(args.data, quick=False, masks=args.masks, repeat=args.repeat)
    width, height = result["shape"]
    encode, decode = result["encode_ms"], result["decode_ms"]
    print(f"RLE on {result['source']}, {width}x{height}, {result['tokens_per_mask']} tokens each on average")
    print(f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}")
    print(f"encode  {encode:7.2f} ms/mask")
    print(f"decode  {decode:7.2f} ms/mask (with validation)")
    print(f"both    {encode + decode:7.2f} ms/mask")


if __name__ == "__main__":
    main()
