"""What writing one output costs: PIL's ``Image.save`` (how ``predict`` wrote files before) against
``maskingnet.outputs.encode`` (OpenCV's ``cv2.imencode``) on a soft-edged 1918x1280 cut-out of a real Carvana
photo and its on-white JPEG.

Prints, per case, the encoding's CPU time (``time.thread_time``: what the encoding itself costs, little
disturbed by other processes on a shared machine) and the wall time of the whole atomic file write, best and
median of ``--rounds`` interleaved rounds, with the file size; then checks that the PNG decodes in PIL to the
same pixels. Run (nice it on a shared machine)::

    python benchmarks/bench_encode.py [--photo ../shared/data/carvana-sample/train/03a857ce842d_01.jpg]
        [--rounds 9]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from maskingnet.data.io import read_image, read_mask
from maskingnet.outputs import EdgeConfig, background_image, cutout_image
from maskingnet.outputs.encode import encode, write_image
from maskingnet.utils import atomic_save

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "carvana-sample"


def pil_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", type=Path, default=SAMPLE / "train" / "03a857ce842d_01.jpg")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    mask_path = args.photo.parent.parent / "train_masks" / f"{args.photo.stem}_mask.gif"
    photo = read_image(args.photo)
    probs = read_mask(mask_path).astype(np.float32)
    cut = cutout_image(photo, probs, EdgeConfig(soft=True))
    white = background_image(photo, probs, edges=EdgeConfig(soft=True))
    rgba, rgb = np.asarray(cut), np.asarray(white)
    folder = Path(tempfile.mkdtemp(prefix="maskingnet-bench-encode-"))
    cpu = {
        "RGBA png: PIL level 3 (before)": lambda: pil_bytes(cut, "PNG", compress_level=3),
        "RGBA png: maskingnet.outputs.encode": lambda: encode(rgba, "png"),
        "RGB jpg q95: PIL (before)": lambda: pil_bytes(white, "JPEG", quality=95),
        "RGB jpg q95: maskingnet.outputs.encode": lambda: encode(rgb, "jpg"),
        "RGBA webp q90: PIL": lambda: pil_bytes(cut, "WEBP", quality=90),
        "RGBA webp q90: maskingnet.outputs.encode": lambda: encode(rgba, "webp"),
    }
    wall = {
        "RGBA png file: PIL save (before)": lambda: atomic_save(
            folder / "a_cutout.png", lambda tmp: cut.save(tmp, compress_level=3)
        ),
        "RGBA png file: write_image": lambda: write_image(folder / "b_cutout.png", rgba),
    }
    cpu_s = {name: [] for name in cpu}
    wall_s = {name: [] for name in wall}
    sizes = {}
    for _ in range(args.rounds):
        for name, job in cpu.items():
            start = time.thread_time()
            sizes[name] = len(job())
            cpu_s[name].append(time.thread_time() - start)
        for name, job in wall.items():
            start = time.perf_counter()
            job()
            wall_s[name].append(time.perf_counter() - start)
    for name, times in [*cpu_s.items(), *wall_s.items()]:
        times.sort()
        clock = "cpu" if name in cpu_s else "wall"
        size = f"  {sizes[name] / 1e6:.3f} MB" if name in sizes else ""
        best, median = times[0] * 1000, times[len(times) // 2] * 1000
        print(f"{name:36s} {clock} best {best:6.1f} ms  median {median:6.1f} ms{size}")
    same = np.array_equal(np.asarray(Image.open(io.BytesIO(encode(rgba, "png")))), rgba)
    print(f"PNG decodes in PIL to the same pixels: {same}")


if __name__ == "__main__":
    main()
