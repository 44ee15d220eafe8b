"""The input spec: what a model expects of a photo, stored with its weights and read back by every backend.

One :class:`InputSpec` says at which size (W, H) the network sees a whole photo (and at which photo scale it
was trained, when it was given as a scale), how pixels are normalised (``mean``, ``std`` on 0..1 RGB), the
names of the output classes and the coordinate-map convention (:mod:`maskingnet.data.coords`). It is written
into the safetensors metadata of a checkpoint (key ``maskingnet.spec``) and the ONNX metadata of an export,
and every backend exposes it as ``backend.spec``. Files written before it existed get it from their ``meta``.

A spec comes from a file, so its values are checked when it is built (:class:`SpecError`, one line): an
input size is at most :data:`MAX_INPUT_SIDE` a side and :data:`MAX_INPUT_PIXELS` in all, since every photo
is resized to it before anything else happens (a header asking for 100000x100000 would make each photo
cost 120 GB).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from maskingnet.data.coords import CONVENTION
from maskingnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from maskingnet.errors import MaskingnetError
from maskingnet.utils import parse_json

SPEC_KEY = "maskingnet.spec"  # the metadata key in files already written: never rename
CLASS_NAMES = ("background", "car")
MAX_INPUT_SIDE = 8192
MAX_INPUT_PIXELS = 8192 * 4096
MAX_CLASSES = 1024


class SpecError(MaskingnetError, ValueError):
    """An input spec with values no model can run at (an absurd size, a zero std, ...)."""


@dataclass(frozen=True)
class InputSpec:
    """What the network expects; ``size`` (W, H) is None when the file does not say (any size runs)."""

    size: tuple[int, int] | None = None
    scale: float | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    class_names: tuple[str, ...] = CLASS_NAMES
    coords: str = CONVENTION

    def __post_init__(self) -> None:
        if self.size is not None:
            object.__setattr__(self, "size", checked_size(self.size))
        object.__setattr__(self, "scale", _checked_scale(self.scale))
        for name in ("mean", "std"):
            object.__setattr__(self, name, _three_numbers(name, getattr(self, name)))
        if min(self.std) <= 0:
            raise SpecError(f"input spec std {self.std} must be positive")
        names = self.class_names
        if not isinstance(names, (list, tuple)) or not 1 <= len(names) <= MAX_CLASSES:
            raise SpecError(f"input spec class names {str(names)[:80]!r}: expected 1 to {MAX_CLASSES} names")
        object.__setattr__(self, "class_names", tuple(str(name) for name in names))

    @classmethod
    def from_meta(cls, meta: dict[str, Any] | None) -> InputSpec:
        """The spec of a checkpoint whose ``meta`` records ``input_size`` (and perhaps ``scale``)."""
        meta = meta if isinstance(meta, dict) else {}
        size = meta.get("input_size")
        return cls(size=size or None, scale=meta.get("scale"))

    def with_size(self, size: tuple[int, int] | None) -> InputSpec:
        return self if size is None else replace(self, size=size)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> InputSpec:
        return cls.from_dict(parse_json(text))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputSpec:
        """The spec of a JSON object (unknown keys ignored); values are checked."""
        known = {key: value for key, value in data.items() if key in cls.__dataclass_fields__}
        return cls(**known)


def checked_size(size: Any) -> tuple[int, int]:
    """``size`` as (W, H) ints, or :class:`SpecError` unless both sides are 1..``MAX_INPUT_SIDE`` and the
    area at most ``MAX_INPUT_PIXELS``."""
    try:
        width, height = (int(side) for side in size)
        whole = all(float(side) == int(side) for side in size)
    except (TypeError, ValueError, OverflowError):
        raise SpecError(f"input size {str(size)[:80]!r} is not two whole numbers (W, H)") from None
    if not whole or not (1 <= width <= MAX_INPUT_SIDE and 1 <= height <= MAX_INPUT_SIDE):
        raise SpecError(f"input size {size!r} out of range: each side 1 to {MAX_INPUT_SIDE}")
    if width * height > MAX_INPUT_PIXELS:
        raise SpecError(f"input size {width}x{height} is more than {MAX_INPUT_PIXELS:,} pixels")
    return width, height


def _checked_scale(scale: Any) -> float | None:
    if scale is None:
        return None
    try:
        value = float(scale)
    except (TypeError, ValueError):
        value = math.nan
    if not 0 < value <= 1e4:
        raise SpecError(f"input spec scale {str(scale)[:40]!r} must be a positive number")
    return value


def _three_numbers(name: str, values: Any) -> tuple[float, float, float]:
    try:
        numbers = tuple(float(value) for value in values)
    except (TypeError, ValueError):
        numbers = ()
    if len(numbers) != 3 or not all(math.isfinite(value) for value in numbers):
        raise SpecError(f"input spec {name} {str(values)[:80]!r}: expected three finite numbers")
    return numbers[0], numbers[1], numbers[2]


def read_spec(metadata: dict[str, str], meta: dict[str, Any] | None) -> InputSpec:
    """The spec under ``maskingnet.spec`` in a file's string metadata, else the one ``meta`` implies.

    Text that is not a JSON object falls back to ``meta`` (files older than the spec); values out of range
    raise :class:`SpecError` either way."""
    text = metadata.get(SPEC_KEY)
    if text:
        try:
            data = parse_json(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            return InputSpec.from_dict(data)
    return InputSpec.from_meta(meta)
