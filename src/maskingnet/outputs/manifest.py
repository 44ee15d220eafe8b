"""The record a ``predict`` run keeps in its output folder, for people and for a shop's import script.

- ``manifest.csv``: one row per input photo, whichever run made its outputs: ``input`` (relative to the input
  folder), ``status`` (``done`` this run, ``skipped``: outputs of an earlier run with the same settings,
  ``failed``), ``error``, one column per output kind (paths relative to the output folder, empty when not
  written), ``car_fraction`` (share of the photo's pixels that are car), ``unsure_px`` (how wide, in the
  network's own pixels, the band is along the car's outline where it cannot tell car from background) and
  ``review`` (the checks the photo failed, space-separated, empty when none;
  :mod:`maskingnet.outputs.review`), ``seconds`` (the work spent on the photo: decoding, its share of its
  batch's model call, full resolution, the outputs) and ``settings`` (the fingerprint of the model and
  settings that made the outputs). Quoted by the csv module, UTF-8, written atomically.
- ``maskingnet-settings.json``: the settings behind each fingerprint, so a re-run can say what changed.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maskingnet.utils import atomic_write, parse_json, write_json

MANIFEST_NAME = "manifest.csv"
SETTINGS_NAME = "maskingnet-settings.json"
KINDS = ("mask", "cutout", "white", "overlay")
COLUMNS = ("input", "status", "error", *KINDS, "car_fraction", "unsure_px", "review", "seconds", "settings")


@dataclass
class ManifestRow:
    """One input photo and what became of it."""

    input: str
    status: str
    outputs: dict[str, str] = field(default_factory=dict)
    car_fraction: float | None = None
    seconds: float | None = None
    settings: str = ""
    error: str = ""
    unsure: float | None = None
    review: str = ""

    def cells(self) -> list[str]:
        kinds = [self.outputs.get(kind, "") for kind in KINDS]
        return [
            self.input,
            self.status,
            self.error,
            *kinds,
            "" if self.car_fraction is None else f"{self.car_fraction:.6f}",
            "" if self.unsure is None else f"{self.unsure:.2f}",
            self.review,
            "" if self.seconds is None else f"{self.seconds:.3f}",
            self.settings,
        ]

    @classmethod
    def from_record(cls, record: dict[str, str]) -> ManifestRow:
        return cls(
            input=record.get("input") or "",
            status=record.get("status") or "",
            outputs={kind: record[kind] for kind in KINDS if record.get(kind)},
            car_fraction=_number(record.get("car_fraction")),
            seconds=_number(record.get("seconds")),
            settings=record.get("settings") or "",
            error=record.get("error") or "",
            unsure=_number(record.get("unsure_px")),
            review=record.get("review") or "",
        )


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def manifest_name(rank: int = 0, world: int = 1) -> str:
    """``manifest.csv``; under torchrun each rank writes its own ``manifest.rank<R>.csv``."""
    return MANIFEST_NAME if world <= 1 else f"manifest.rank{rank}.csv"


def read_manifests(out: Path) -> dict[str, ManifestRow]:
    """Every row of the manifests in ``out`` by input (a damaged or missing manifest reads as none)."""
    rows: dict[str, ManifestRow] = {}
    for path in sorted(Path(out).glob("manifest*.csv")):
        with contextlib.suppress(OSError, csv.Error, UnicodeDecodeError):
            text = path.read_bytes().decode("utf-8", errors="surrogateescape")
            for record in csv.DictReader(io.StringIO(text, newline="")):
                row = ManifestRow.from_record(record)
                if row.input:
                    rows[row.input] = row
    return rows


def write_manifest(path: Path, rows: Iterable[ManifestRow], unless: bytes | None = None) -> bytes:
    """All ``rows`` under the header, atomically (a reader never sees half a file); nothing is written when
    the file would be ``unless`` (what it holds already). Returns the file's bytes."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(row.cells() for row in rows)
    data = buffer.getvalue().encode("utf-8", errors="surrogateescape")
    if data != unless:
        with atomic_write(path) as handle:
            handle.write(data)
    return data


def read_settings(out: Path) -> dict[str, dict[str, Any]]:
    """Settings by fingerprint, as earlier runs recorded them (none when the file is missing or damaged)."""
    try:
        known = parse_json((Path(out) / SETTINGS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def record_settings(out: Path, key: str, settings: dict[str, Any]) -> None:
    """Add this run's settings under their fingerprint ``key`` (earlier runs' entries stay)."""
    known = read_settings(out)
    if known.get(key) != settings:
        known[key] = settings
        write_json(Path(out) / SETTINGS_NAME, known)


def relative_output(path: Path, out: Path) -> str:
    """An output's path relative to the output folder, ``/``-separated."""
    return Path(os.path.relpath(path, out)).as_posix()
