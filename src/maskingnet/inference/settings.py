"""``ModelSettings``: the one place the options for running a model are written down.

Every verb that runs a model (``evaluate``, ``predict``, ``submit``, ``serve``, ``cutout``) and the Python
API (:class:`~maskingnet.inference.Predictor`, :func:`maskingnet.remove`) take these options as one frozen
object: the verbs' configs embed it, the command line fills it from one option group, a
:class:`Predictor` is built from it, and its :meth:`ModelSettings.as_dict` is what the fingerprint of an
output records. A new option is one field here, one line in the command line's group, and the code that
reads it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maskingnet.inference.fingerprint import model_identity
from maskingnet.utils import parse_size


@dataclass(frozen=True)
class ModelSettings:
    """Which model runs, where and how.

    ``checkpoint``: a bundled model's name (None: the default bundled model), a ``.safetensors`` or
    ``.onnx`` file, a loaded model or a backend. ``size`` (W, H), an int or ``"WxH"``: the model's input
    size (None: the checkpoint's). ``device``: auto, cpu, cuda, cuda:N or mps. ``precision``: auto, fp32,
    bf16, fp16 or int8. ``backend``: auto, torch or onnxruntime. ``tta``: average with the mirrored photo.
    ``refine``: place the outline from the photo (the model file's refiner, else the guided filter);
    ``guided``: the guided filter even when the model has a refiner; ``clean``: keep only the car.
    """

    checkpoint: Any = None
    size: tuple[int, int] | None = None
    device: str = "auto"
    precision: str = "auto"
    backend: str = "auto"
    tta: bool = False
    refine: bool = True
    guided: bool = False
    clean: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", parse_size(self.size))

    def replace(self, **changes: Any) -> ModelSettings:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """The model by content (name and SHA-256 of its file) and every setting, JSON-able: what an
        output's fingerprint records, so that changing any of them redoes the outputs."""
        settings = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        del settings["checkpoint"]
        settings["size"] = list(self.size) if self.size else None
        return {**model_identity(self.checkpoint), **settings}

    def to_json_dict(self) -> dict[str, Any]:
        """The settings as JSON-able values (the checkpoint as a path string), for another process."""
        data = dataclasses.asdict(self)
        if self.checkpoint is not None:
            data["checkpoint"] = os.fspath(self.checkpoint)
        data["size"] = list(self.size) if self.size else None
        return data

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> ModelSettings:
        """Back from :meth:`to_json_dict` (the checkpoint as a path)."""
        checkpoint = data.get("checkpoint")
        return cls(**{**data, "checkpoint": None if checkpoint is None else Path(checkpoint)})
