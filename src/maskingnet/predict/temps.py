"""Temporary files a killed run may have left beside its outputs: whose they are, and removing the stale."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from maskingnet.outputs.layout import (
    is_output_name,
)
from maskingnet.utils.processes import process_alive


def stale_temp_target(name: str) -> tuple[str, str] | None:
    """(stem, suffix) of the output an ``atomic_save`` temp file (``.<stem>.<pid>-<random>.tmp<suffix>``)
    was for."""
    if not name.startswith("."):
        return None
    head, marker, suffix = name.rpartition(".tmp")
    stem, dot, pid = head[1:].rpartition(".")
    if not marker or not dot or not pid.partition("-")[0].isdigit():
        return None
    return stem, suffix


def temp_owner_pid(name: str) -> int:
    """The process id in an ``atomic_save`` temp name ``.<stem>.<pid>-<random>.tmp<suffix>`` (0 if none)."""
    head = name.rpartition(".tmp")[0]
    pid = head.rpartition(".")[2].partition("-")[0]
    return int(pid) if pid.isdigit() else 0


def remove_stale_temps(out: Path, targets: Iterable[Path]) -> None:
    """Delete temp files that a killed run left behind for these outputs (in their folders).

    Only files whose owning process is gone: another run writing to the same folder right now keeps its
    in-flight temp files (each process names its own, so the two never collide)."""
    wanted: dict[Path, set[tuple[str, str]]] = {}
    for target in targets:
        wanted.setdefault(target.parent, set()).add((target.stem, target.suffix))
    for folder, names in wanted.items():
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if stale_temp_target(entry.name) in names and not process_alive(temp_owner_pid(entry.name)):
                entry.unlink(missing_ok=True)


def is_earlier_output(path: Path, out: Path) -> bool:
    """A file in the output folder named like one of our outputs: never an input (the output folder may
    lie inside, or be, an input folder)."""
    return is_output_name(path.name) and path.resolve().is_relative_to(out.resolve())
