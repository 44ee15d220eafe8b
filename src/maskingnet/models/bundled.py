"""Models that ship inside the package, so a cut-out needs no training and no download.

A bundled model is a safetensors file under ``maskingnet/weights/`` (found with :mod:`importlib.resources`,
so it works from an installed wheel as well as from a checkout), with its SHA-256 recorded here and checked
before the file is used. :func:`resolve_model` turns what a user types after ``-m/--model`` (a bundled
name, a ``.safetensors`` or an ``.onnx`` path) into a file path.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import torch

from .checkpoint import CheckpointError
from .checkpoint import load_model as load_model_file
from .encoder_decoder import EncoderDecoder


@dataclass(frozen=True)
class BundledModel:
    """One model in the box: its file name, checksum and a one-line description."""

    name: str
    file: str
    sha256: str
    summary: str


BUNDLED: dict[str, BundledModel] = {
    model.name: model
    for model in (
        BundledModel(
            name="maskingnet-carvana",
            file="maskingnet-carvana.safetensors",
            sha256="c32dfa8de681c6539220994c4d5d6c0294678debbd9b0510b7a973ba2c73a55f",
            summary="MaskingNet w0.25 at 480x320 + edge refiner, 247 real Carvana cars, "
            "Dice 0.9940 on 20 unseen cars",
        ),
    )
}
DEFAULT_MODEL = "maskingnet-carvana"
MODEL_SUFFIXES = (".safetensors", ".onnx")


def list_bundled() -> list[BundledModel]:
    """The bundled models, default first."""
    return sorted(BUNDLED.values(), key=lambda model: model.name != DEFAULT_MODEL)


def bundled_path(name: str) -> Path:
    """The checked file of the bundled model ``name`` (:class:`CheckpointError` if missing or altered)."""
    if name not in BUNDLED:
        known = ", ".join(BUNDLED)
        raise CheckpointError(name, f"is not a bundled model (bundled: {known}) nor an existing file")
    model = BUNDLED[name]
    path = Path(str(resources.files("maskingnet") / "weights" / model.file))
    if not path.is_file():
        raise CheckpointError(path, f"bundled model {name!r} is missing from this installation")
    digest = file_sha256(path)
    if digest != model.sha256:
        raise CheckpointError(
            path,
            f"bundled model {name!r} is damaged (sha256 {digest[:12]}..., expected {model.sha256[:12]}...)",
        )
    return path


def is_bundled_file(path: object) -> bool:
    """Whether ``path`` is one of the bundled models' files (where this installation keeps them)."""
    if not isinstance(path, (str, os.PathLike)):
        return False
    weights = Path(str(resources.files("maskingnet") / "weights"))
    return any(Path(path).resolve() == (weights / model.file).resolve() for model in BUNDLED.values())


@lru_cache(maxsize=8)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, hex (remembered while the file's size and time stay the same)."""
    stat = Path(path).stat()
    return _cached_sha256(str(path), stat.st_size, stat.st_mtime_ns)


def resolve_model(name_or_path: str | os.PathLike | None = None) -> Path:
    """The model file for ``-m/--model``: an existing path, else a bundled name; None is the default model."""
    if name_or_path is None:
        return bundled_path(DEFAULT_MODEL)
    path = Path(name_or_path)
    if path.is_file():
        return path
    text = str(name_or_path)
    if text in BUNDLED:
        return bundled_path(text)
    if path.suffix in MODEL_SUFFIXES or os.sep in text:
        raise CheckpointError(path, "no such file")
    return bundled_path(text)


def load_model(
    name_or_path: str | os.PathLike | None = None, device: str | torch.device = "cpu"
) -> EncoderDecoder:
    """:func:`maskingnet.models.checkpoint.load_model` for a file or a bundled model's name (None: the
    default bundled model)."""
    return load_model_file(resolve_model(name_or_path), device=device)


def pretrained_model(name: str, width: float | None = None) -> EncoderDecoder:
    """The bundled model of architecture ``name`` (and ``width``, when given): ``create_model(...,
    pretrained=True)``."""
    for bundled in list_bundled():
        model = load_model(bundled.name)
        if model.config.name == name and (width is None or model.config.width == width):
            return model
    shipped = ", ".join(b.name for b in list_bundled())
    raise CheckpointError(name, f"no bundled weights for {name} width {width} (bundled: {shipped})")
