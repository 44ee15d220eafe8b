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


def _png(width: int, height: int, colour_type: int, pixels: bytes) -> bytes:
    """A PNG file around already deflated ``pixels`` (8 bits a sample)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height: a decompression bomb to whoever trusts it."""
    return _png(width, height, 2, zlib.compress(b"\0" * 64))


def ramp_png(width: int, height: int) -> bytes:
    """A real, fully decodable width x height grey PNG of a few kilobytes: every row is the same
    left-to-right ramp, stored with PNG's "Up" filter, so all rows after the first are zeros to deflate.
    A photo-sized workload (a 6300x6300 one is about 50 KB) for whoever sizes work from the header."""
    first = b"\0" + bytes(x * 256 // width for x in range(width))
    rest = b"\2" + bytes(width)
    deflate = zlib.compressobj(9)
    body = [deflate.compress(first)] + [deflate.compress(rest) for _ in range(height - 1)] + [deflate.flush()]
    return _png(width, height, 0, b"".join(body))


def peak_rss_growth_mb(action) -> tuple[object, float]:
    """``action()``'s result and how far this process's peak RSS rose above its RSS before it, in MB.

    Linux only: the peak (``VmHWM``) is reset through ``/proc/self/clear_refs`` first; the caller skips
    when that is not possible (``OSError``)."""
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kb("VmRSS")
    result = action()
    return result, (_status_kb("VmHWM") - before) / 1024


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def http_request(host: str, port: int, method: str, path: str, body: bytes = b"", headers=None, timeout=120):
    """(status, lower-cased headers, body) of one HTTP request on a fresh connection."""
    import http.client

    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def multipart_body(fields: dict, filename: str = "car.jpg") -> tuple[bytes, str]:
    """A multipart/form-data body of ``fields`` (bytes values as files) and its content type."""
    import uuid

    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        if isinstance(value, bytes):
            head = (
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            )
            parts.append(f"--{boundary}\r\n{head}".encode() + value + b"\r\n")
        else:
            head = f'Content-Disposition: form-data; name="{name}"\r\n\r\n'
            parts.append(f"--{boundary}\r\n{head}{value}\r\n".encode())
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def png_with_exif_after_pixels(stored: tuple[int, int], orientation: int = 6) -> bytes:
    """A PNG whose eXIf chunk (EXIF orientation) follows the IDAT chunks, as some tools write it."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", stored, (90, 120, 150)).save(buffer, "PNG")
    plain = buffer.getvalue()
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = exif.tobytes()
    chunk = len(data).to_bytes(4, "big") + b"eXIf" + data + zlib.crc32(b"eXIf" + data).to_bytes(4, "big")
    end = plain.rindex(b"IEND") - 4
    return plain[:end] + chunk + plain[end:]


def progressive_scan_bomb(size: tuple[int, int], repeats: int) -> bytes:
    """A flat grey progressive JPEG whose smallest AC scan (a few bytes: one run of empty blocks) is
    repeated ``repeats`` more times before EOI: each repeat costs the decoder a pass over every block."""
    import io
    import re

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (120, 130, 140)).save(buffer, "JPEG", progressive=True, quality=80)
    data = buffer.getvalue()
    scans, pos = [], 2
    while data[pos + 1] != 0xD9:  # walk the segments to EOI; the test JPEG has no stray bytes
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if data[pos + 1] == 0xDA:
            end = re.compile(rb"\xff+[^\x00\xd0-\xd7\xff]").search(data, end).start()
            scans.append(data[pos:end])
        pos = end
    return data[:pos] + min(scans[1:], key=len) * repeats + data[pos:]


def train_tiny(data: Path, out: Path, **settings) -> dict:
    """A tiny training run (maskingnet width 0.125 at 64x64, one torch thread, no loader processes, no
    progress bar) with ``settings`` on top; torch's thread count is restored afterwards."""
    import torch

    from maskingnet.train import TrainConfig, train

    defaults = dict(width=0.125, size=(64, 64), epochs=2, threads=1, workers=0, progress=False)
    threads = torch.get_num_threads()
    try:
        return train(TrainConfig(data=str(data), out=str(out), **{**defaults, **settings}))
    finally:
        torch.set_num_threads(threads)
