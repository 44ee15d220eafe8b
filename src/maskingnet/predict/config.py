"""What a ``predict`` run is asked to do (:class:`PredictConfig`), what it did (:class:`PredictSummary`),
one photo's work (:class:`Job`), the checks made before any photo runs, and the settings its outputs'
fingerprint records."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from maskingnet.inference.settings import ModelSettings
from maskingnet.outputs import EdgeConfig, check_threshold
from maskingnet.outputs.encode import DEFAULT_QUALITY, check_format
from maskingnet.outputs.files import PictureOptions
from maskingnet.outputs.framing import DEFAULT_MARGIN, Framing
from maskingnet.outputs.layout import (
    kind_format,
)


@dataclass
class PredictConfig:
    """Options of ``maskingnet predict`` (see ``maskingnet predict --help``); ``model``: the model's
    settings, or just a checkpoint (run with the default settings)."""

    model: ModelSettings
    inputs: Sequence[str | os.PathLike]
    out: Path
    save: tuple[str, ...] = ("mask", "cutout")
    batch_size: int = 4
    workers: int | None = None
    threshold: float = 0.5
    background: tuple[int, int, int] = (255, 255, 255)
    soft_edges: bool = False
    overwrite: bool = False
    recursive: bool = True
    progress: bool = True
    fmt: str = "auto"
    quality: int | None = None
    crop_to_car: bool = False
    margin: float = DEFAULT_MARGIN
    canvas: tuple[int, int] | None = None
    listing: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelSettings):
            self.model = ModelSettings(self.model)

    def framing(self) -> Framing | None:
        return Framing(self.margin, self.canvas) if self.crop_to_car else None

    def pictures(self) -> PictureOptions:
        """How the outputs look and are encoded (the same options on every surface)."""
        edges = EdgeConfig(threshold=self.threshold, soft=self.soft_edges)
        return PictureOptions(edges, self.background, self.fmt, self.quality, self.framing())


@dataclass
class PredictSummary:
    """What a predict run did; ``failed`` counts unusable inputs (with one line each in ``problems``);
    ``redone``: photos whose earlier outputs were made with other settings (or unknown ones)."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    redone: int = 0
    problems: list[str] = field(default_factory=list)
    review: list[str] = field(default_factory=list)
    seconds: float = 0.0
    manifest: Path | None = None

    @property
    def images_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Job:
    """One input photo: its path, its path relative to the input folder, and its output files."""

    path: Path
    rel: PurePosixPath
    targets: list[Path]


def pixel_settings(config: PredictConfig) -> dict[str, Any]:
    """The model and every setting that changes the outputs' pixels (or their encoding)."""
    formats = {kind_format(kind, config.fmt) for kind in config.save}
    settings: dict[str, Any] = {
        **config.model.as_dict(),
        "threshold": config.threshold,
        "soft_edges": config.soft_edges,
        "format": config.fmt,
    }
    if "white" in config.save or ("cutout" in config.save and kind_format("cutout", config.fmt) == "jpg"):
        settings["background"] = "#{:02x}{:02x}{:02x}".format(*config.background)
    for fmt in sorted(formats & set(DEFAULT_QUALITY)):
        settings[f"{fmt}_quality"] = config.quality or DEFAULT_QUALITY[fmt]
    if config.crop_to_car:
        settings["crop_to_car"] = {"margin": config.margin, "canvas": list(config.canvas or []) or None}
        if config.listing:
            settings["crop_to_car"]["listing"] = True
    return settings


def check_config(config: PredictConfig) -> None:
    """Refuse settings that cannot work before any photo is read."""
    check_threshold(config.threshold)
    if config.fmt != "auto":
        config.fmt = check_format(config.fmt, config.quality)
    elif config.quality is not None:
        check_format("jpg", config.quality)
    config.framing()  # checks the margin
    if config.listing and config.canvas is None:
        raise ValueError("--listing places each folder's photos on one canvas: give --canvas WxH too")


def one_picture_for_jpg(config: PredictConfig, say: Callable[[str], None]) -> None:
    """A JPEG cut-out is the car on the background, the very picture ``white`` is: asked for both, only
    ``white`` is written, with one line saying why."""
    if kind_format("cutout", config.fmt) == "jpg" and {"cutout", "white"} <= set(config.save):
        config.save = tuple(kind for kind in config.save if kind != "cutout")
        say(
            "predict: a jpg cut-out is the car on --background, the same picture as 'white': writing 'white' "
            "only (--format png or webp for a transparent cut-out)"
        )
