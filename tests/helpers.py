"""Small builders shared by several test modules (importable as ``helpers``: pytest's pythonpath)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def make_half_car_checkpoint(path: Path, input_size=(64, 64)) -> Path:
    """A tiny random MaskingNet whose classifier bias is set so that about half of a photo is "car"."""
    import torch

    from maskingnet.models import create_model, save_model

    torch.manual_seed(0)
    model = create_model("maskingnet", width=0.125).eval()
    ramp = torch.linspace(-2, 2, 64 * 64 * 3).reshape(1, 3, 64, 64)
    with torch.no_grad():
        logits = model(ramp + 0.5 * torch.randn_like(ramp))
        model.classifier.bias[1] -= (logits[0, 1] - logits[0, 0]).median()
    save_model(model, path, meta={"input_size": list(input_size)})
    return path


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height: a decompression bomb to whoever trusts it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
