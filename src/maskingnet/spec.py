"""The input spec: what a model expects of a photo, stored with its weights and read back by every backend.

One :class:`InputSpec` says at which size (W, H) the network sees a whole photo (and at which photo scale it
was trained, when it was given as a scale), how pixels are normalised (``mean``, ``std`` on 0..1 RGB), the
names of the output classes and the coordinate-map convention (:mod:`maskingnet.coords`). It is written into
the safetensors metadata of a checkpoint (``maskingnet.spec``) and the ONNX metadata of an export, and every
backend exposes it as ``backend.spec``. Files written before it existed get it from their ``meta``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any

from maskingnet.coords import CONVENTION
from maskingnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD

SPEC_KEY = "maskingnet.spec"
CLASS_NAMES = ("background", "car")


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
            object.__setattr__(self, "size", (int(self.size[0]), int(self.size[1])))
        for name in ("mean", "std", "class_names"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @classmethod
    def from_meta(cls, meta: dict[str, Any] | None) -> InputSpec:
        """The spec of a checkpoint whose ``meta`` records ``input_size`` (and perhaps ``scale``)."""
        meta = meta or {}
        size = meta.get("input_size")
        return cls(size=tuple(size) if size else None, scale=meta.get("scale"))

    def with_size(self, size: tuple[int, int] | None) -> InputSpec:
        return self if size is None else replace(self, size=size)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> InputSpec:
        data = json.loads(text)
        known = {key: value for key, value in data.items() if key in cls.__dataclass_fields__}
        return cls(**known)


def read_spec(metadata: dict[str, str], meta: dict[str, Any] | None) -> InputSpec:
    """The spec under ``maskingnet.spec`` in a file's string metadata, else the one ``meta`` implies."""
    text = metadata.get(SPEC_KEY)
    if text:
        try:
            return InputSpec.from_json(text)
        except (ValueError, TypeError):
            pass
    return InputSpec.from_meta(meta)
