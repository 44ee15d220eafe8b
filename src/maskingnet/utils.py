"""Small helpers shared across the package."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any


def _current_umask() -> int:
    """The process umask; read from /proc where it can be, because setting it to read it races with
    writer threads creating files at the same moment."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _usual_mode(path: str | os.PathLike) -> None:
    """Give a temp output the mode ``open()`` would (0666 less the umask): ``mkstemp`` and writers such as
    ``safetensors`` make files 0600, which other users of a shared output folder then cannot read."""
    os.chmod(path, 0o666 & ~_current_umask())


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file beside ``path``; on success it replaces ``path`` in one step (no half files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        _usual_mode(tmp)
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, content: Any) -> None:
    """``content`` as indented JSON with a final newline, written atomically."""
    with atomic_write(path, "w") as handle:
        json.dump(content, handle, indent=2)
        handle.write("\n")


def atomic_save(path: str | os.PathLike, save) -> None:
    """Call ``save(tmp_path)`` on a temp path beside ``path``, then rename it over ``path``.

    For writers that want a file name rather than a handle (PIL's ``Image.save`` with a format from the
    suffix, ``safetensors.torch.save_file``, ``matplotlib.Figure.savefig``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        save(tmp)
        _usual_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def parse_size(value: str | int | Sequence[int] | None, *, square: bool = True) -> tuple[int, int] | None:
    """An image size as ``(width, height)``: ``"1918x1280"`` or ``(1918, 1280)``; ``"512"`` or ``512`` is
    ``(512, 512)`` when ``square``; ``None`` or ``""`` is ``None``. Anything else raises a one-line
    ``ValueError``."""
    if value is None or value == "":
        return None
    expected = "WxH, e.g. 1918x1280" if not square else "N or WxH, e.g. 512 or 1918x1280"
    if isinstance(value, int):
        values = [value, value] if square else [value]
    elif isinstance(value, str):
        parts = value.strip().lower().replace("×", "x").split("x")
        if not all(part.strip().isdigit() for part in parts):
            raise ValueError(f"size {value!r}: expected {expected}")
        values = [int(part) for part in parts]
        if square and len(values) == 1:
            values *= 2
    else:
        values = [int(item) for item in value]
    if len(values) != 2 or min(values) < 1:
        raise ValueError(f"size {value!r}: expected {expected}, with positive integers")
    return values[0], values[1]


def lazy_exports(
    package: str, exports: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` (PEP 562) for ``package``, whose public names ``exports`` maps to the
    modules defining them: each is imported on first use, so importing the package stays cheap."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(getattr(importlib.import_module(package), "__all__", exports))

    return __getattr__, __dir__
