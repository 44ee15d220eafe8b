"""Run-length encoding exactly as Kaggle scored the Carvana Image Masking Challenge.

Pixels are numbered row by row (left to right, then top to bottom; numpy's C order, no transpose), starting
at 1. A mask is written as space-separated ``start length`` pairs, one per run of car pixels; an empty mask
is the empty string. Both directions are vectorised numpy: a 1918x1280 mask takes milliseconds.
"""

from __future__ import annotations

import re

import numpy as np

_ONLY_DIGITS_AND_SPACE = re.compile(r"[0-9 \t\r\n]*")
_NOT_A_TOKEN = re.compile(r"[^ \t\r\n]*[^0-9 \t\r\n][^ \t\r\n]*")


def rle_encode(mask: np.ndarray) -> str:
    """Encode a 2-D mask (any non-zero pixel is car) as Kaggle Carvana RLE."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"rle_encode needs a 2-D mask, got shape {mask.shape}")
    flat = (mask if mask.dtype == bool else mask != 0).ravel(order="C").view(np.uint8)
    if flat.size == 0:
        return ""
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    if flat[0]:
        edges = np.concatenate(([0], edges))
    if flat[-1]:
        edges = np.concatenate((edges, [flat.size]))
    pairs = edges.astype(np.int64)
    pairs[0::2] += 1
    pairs[1::2] -= edges[0::2]
    return " ".join(map(str, pairs.tolist()))


def rle_runs(rle: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Parse and validate ``rle`` for a mask of ``shape``; return 0-indexed run starts and lengths.

    Raises ``ValueError`` naming the first problem: a token that is not a non-negative integer, an odd number
    of tokens, a start below 1, a zero length, a run past the last pixel, runs out of order or overlapping.
    """
    total = _pixel_count(shape)
    if not isinstance(rle, str):
        raise ValueError(f"RLE must be a string, got {type(rle).__name__}")
    if not _ONLY_DIGITS_AND_SPACE.fullmatch(rle):
        bad = _NOT_A_TOKEN.search(rle)
        raise ValueError(f"RLE token {bad.group(0)!r} is not a non-negative integer")
    if not rle.strip():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    values = np.fromstring(rle, dtype=np.int64, sep=" ")  # text mode: C-speed parsing, not deprecated
    if values.size % 2:
        raise ValueError(f"RLE has an odd number of tokens ({values.size}); it needs start length pairs")
    if values.max() > 2 * total + 1:
        raise ValueError(f"RLE holds a number ({values.max()}) too large for a {shape[0]}x{shape[1]} mask")
    starts, lengths = values[0::2] - 1, values[1::2]
    _check_runs(starts, lengths, total, shape)
    return starts, lengths


def rle_decode(rle: str, shape: tuple[int, int]) -> np.ndarray:
    """Decode Kaggle Carvana RLE into a boolean mask of ``shape`` = (height, width)."""
    starts, lengths = rle_runs(rle, shape)
    total = _pixel_count(shape)
    if starts.size == 0:
        return np.zeros(shape, dtype=bool)
    ends = starts + lengths
    run_lengths = np.empty(2 * starts.size + 1, dtype=np.int64)
    run_lengths[0] = starts[0]
    run_lengths[1:-1:2] = lengths
    run_lengths[2:-1:2] = starts[1:] - ends[:-1]
    run_lengths[-1] = total - ends[-1]
    values = np.zeros(run_lengths.size, dtype=bool)
    values[1::2] = True
    return np.repeat(values, run_lengths).reshape(shape)


def _pixel_count(shape: tuple[int, int]) -> int:
    if len(shape) != 2 or any(int(side) != side or side < 1 for side in shape):
        raise ValueError(f"mask shape must be two positive integers (height, width), got {shape!r}")
    return int(shape[0]) * int(shape[1])


def _check_runs(starts: np.ndarray, lengths: np.ndarray, total: int, shape: tuple[int, int]) -> None:
    if starts.size == 0:
        return
    below = np.flatnonzero(starts < 0)
    if below.size:
        raise ValueError(f"RLE run {below[0] + 1} starts at 0; starts are 1-indexed")
    zero = np.flatnonzero(lengths == 0)
    if zero.size:
        raise ValueError(f"RLE run {zero[0] + 1} has length 0")
    ends = starts + lengths
    past = np.flatnonzero(ends > total)
    if past.size:
        i = past[0]
        raise ValueError(
            f"RLE run {i + 1} ({starts[i] + 1} {lengths[i]}) goes past the last pixel {total} of a "
            f"{shape[0]}x{shape[1]} mask"
        )
    disorder = np.flatnonzero(starts[1:] < ends[:-1])
    if disorder.size:
        i = disorder[0]
        kind = "overlaps" if starts[i + 1] >= starts[i] else "comes before"
        raise ValueError(
            f"RLE run {i + 2} ({starts[i + 1] + 1} {lengths[i + 1]}) {kind} run {i + 1} "
            f"({starts[i] + 1} {lengths[i]}); runs must be sorted and disjoint"
        )
