"""Kaggle RLE encode and decode of full-size 1918x1280 masks (the real sample's, else a synthetic one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from maskingnet.bench.timing import best_ms
from maskingnet.data.rle import rle_decode, rle_encode


def load_masks(data: Path | None, count: int) -> tuple[list[np.ndarray], str]:
    """Up to ``count`` real Carvana masks from ``data/train_masks`` (GIFs), else one synthetic 1918x1280
    ellipse; and a description of which."""
    paths = sorted((Path(data) / "train_masks").glob("*.gif"))[:count] if data is not None else []
    if paths:
        masks = []
        for path in paths:
            with Image.open(path) as gif:
                masks.append(np.asarray(gif) != 0)
        return masks, f"{len(masks)} real Carvana masks"
    yy, xx = np.mgrid[:1280, :1918]
    ellipse = ((xx - 959) / 800) ** 2 + ((yy - 700) / 350) ** 2 <= 1
    return [ellipse], "1 synthetic ellipse mask"


def bench_rle(
    data: Path | None, quick: bool, masks: int | None = None, repeat: int | None = None
) -> dict[str, Any]:
    """Kaggle RLE encode and decode of full-size masks (``masks`` of them; default 20, 3 when ``quick``),
    best of ``repeat`` passes (default 5, 2 when ``quick``)."""
    found, source = load_masks(data, masks or (3 if quick else 20))
    shape = found[0].shape
    rles = [rle_encode(mask) for mask in found]
    repeat = repeat or (2 if quick else 5)
    encode = best_ms(rle_encode, found, repeat)
    decode = best_ms(lambda rle: rle_decode(rle, shape), rles, repeat)
    return {
        "source": source,
        "shape": [shape[1], shape[0]],
        "encode_ms": round(encode, 2),
        "decode_ms": round(decode, 2),
        "tokens_per_mask": round(sum(len(rle.split()) for rle in rles) / len(rles)),
    }
