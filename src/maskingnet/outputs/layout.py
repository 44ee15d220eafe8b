"""Where a run's outputs go: the input tree mirrored under the output folder, one name per output.

``shop/sku1/front.jpg`` and ``shop/sku2/front.jpg`` given as ``shop/`` become ``OUT/sku1/front_cutout.png``
and ``OUT/sku2/front_cutout.png``. Paths are taken relative to the folder the inputs share: the input folder
when one is given, the common parent of the folders and files given otherwise. Two inputs that would still
get the same name (``car.jpg`` and ``car.png`` side by side) get ``<stem>~<8 hex>`` names instead of
overwriting each other.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from maskingnet.outputs.encode import SUFFIXES

OUTPUT_NAMES = ("mask", "cutout", "white", "bg", "overlay")
"""The name part of every output file: ``<stem>_<name>.<png|webp|jpg>``."""
WHITE = (255, 255, 255)


def kind_format(kind: str, fmt: str = "auto") -> str:
    """The file format of an output kind: masks and overlays are always PNG (exact, for checking); the
    cut-out and the photo on a colour take ``fmt`` (``auto``: PNG and JPEG)."""
    if kind in ("mask", "overlay"):
        return "png"
    if fmt == "auto":
        return "png" if kind == "cutout" else "jpg"
    return fmt


def output_suffix(kind: str, fmt: str = "auto", background: tuple[int, int, int] = WHITE) -> str:
    """``_cutout.png``, ``_white.jpg``; on a non-white background the ``white`` kind is ``_bg``."""
    name = "bg" if kind == "white" and tuple(background) != WHITE else kind
    return f"_{name}{SUFFIXES[kind_format(kind, fmt)]}"


def is_output_name(name: str) -> bool:
    """A file name any run could have written as an output."""
    return name.endswith(tuple(f"_{kind}{suffix}" for kind in OUTPUT_NAMES for suffix in SUFFIXES.values()))


def input_root(inputs: Sequence[str | os.PathLike], files: Sequence[Path]) -> Path | None:
    """The folder the output tree mirrors: the common parent of the folders given and of every found file's
    folder (one folder given: that folder). None when they share none (different drives)."""
    anchors = [os.path.abspath(item) for item in inputs if os.path.isdir(item)]
    anchors += [os.path.abspath(path.parent) for path in files]
    if not anchors:
        return None
    try:
        return Path(os.path.commonpath(anchors))
    except ValueError:
        return None


def relative_inputs(files: Sequence[Path], root: Path | None) -> dict[Path, PurePosixPath]:
    """Each file's path relative to ``root``, with ``/`` separators (just its name without a root)."""
    if root is None:
        return {path: PurePosixPath(path.name) for path in files}
    return {
        path: PurePosixPath(Path(os.path.relpath(os.path.abspath(path), root)).as_posix()) for path in files
    }


def output_stems(relative: Sequence[PurePosixPath]) -> dict[PurePosixPath, PurePosixPath]:
    """Output path without suffix per input (``sku1/front``): its folder and stem, or ``stem~hash`` when two
    inputs of one folder share a stem, case aside. The hash is of the relative path, so names are stable
    across runs over the same inputs."""
    counts = Counter((rel.parent, rel.stem.casefold()) for rel in relative)
    stems = {}
    for rel in relative:
        stem = rel.stem
        if counts[(rel.parent, stem.casefold())] > 1:
            stem = f"{stem}~{hashlib.sha1(str(rel).encode(errors='surrogateescape')).hexdigest()[:8]}"
        stems[rel] = rel.parent / stem
    return stems
