"""Small helpers shared across the package."""

from __future__ import annotations

import contextlib
import errno
import importlib
import json
import os
import secrets
import stat
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


def _usual_mode_of(fd: int) -> None:
    """Give an open temp output the mode ``open()`` would (0666 less the umask): ``mkstemp`` and writers such
    as ``safetensors`` make files 0600, which other users of a shared output folder then cannot read. Set
    through the descriptor, so a link planted at the name is never followed (Windows has no modes to set)."""
    if hasattr(os, "fchmod"):
        os.fchmod(fd, 0o666 & ~_current_umask())


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file beside ``path``; on success it replaces ``path`` in one step (no half files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        _usual_mode_of(fd)
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
    suffix, ``safetensors.torch.save_file``, ``matplotlib.Figure.savefig``). The temp file is created
    here, exclusively, under a name no one can guess (:func:`temp_path`), so a symbolic link planted in a
    shared output folder is never written through; before the rename it must still be a regular file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = create_temp_beside(path)
    try:
        save(tmp)
        _settle_temp(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


TEMP_MARKER = ".tmp"
_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)


def temp_path(path: Path) -> Path:
    """``.<stem>.<pid>-<random>.tmp<suffix>`` beside ``path``: the process id tells a later run whether the
    writer is gone (its leftovers may be removed); the random part makes the name unguessable."""
    token = secrets.token_hex(8)
    return path.with_name(f".{path.stem}.{os.getpid()}-{token}{TEMP_MARKER}{path.suffix}")


def create_temp_beside(path: Path, tries: int = 16) -> Path:
    """A new empty temp file for ``path``, created exclusively (``O_EXCL``: never through an existing name
    or link) with the usual mode; a name already taken is passed over for another."""
    for _ in range(tries):
        tmp = temp_path(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_FOLLOW, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"{path.parent}: no free temp name after {tries} tries")


def _settle_temp(tmp: Path) -> None:
    """Check the written temp file is still a regular file (not a link swapped in) and give it the usual
    mode through its descriptor."""
    fd = os.open(tmp, os.O_RDONLY | _NO_FOLLOW)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{tmp}: temp output is no longer a regular file")
        _usual_mode_of(fd)
    finally:
        os.close(fd)


def open_own_file(path: str | os.PathLike, keep: bool) -> IO[bytes]:
    """``path`` opened for reading and writing (created if missing, emptied unless ``keep``) without
    following a symbolic link: a link planted at a predictable name (a resumable part file) is removed and
    a new file made in its place, so writing never lands outside the folder."""
    flags = os.O_RDWR | os.O_CREAT | _NO_FOLLOW | (0 if keep else os.O_TRUNC)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as error:
        if error.errno != errno.ELOOP:
            raise
        os.unlink(path)
        fd = os.open(path, flags | os.O_EXCL, 0o666)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path}: not a regular file")
    return os.fdopen(fd, "r+b")


MAX_JSON_DEPTH = 32
"""Nesting a model file's or a settings file's JSON may have (the deepest we write is 3)."""


def parse_json(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that raises ``ValueError`` for JSON nested deeper than ``max_depth`` (the decoder
    itself raises ``RecursionError`` past Python's recursion limit, which no caller expects)."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"JSON nested more than {max_depth} deep") from None
    if _depth_beyond(value, max_depth):
        raise ValueError(f"JSON nested more than {max_depth} deep")
    return value


def _depth_beyond(value: Any, limit: int) -> bool:
    level = [value]
    for _ in range(limit + 1):
        level = [
            child
            for item in level
            if isinstance(item, (list, dict))
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return False
    return True


def parse_size(
    value: str | int | Sequence[int] | None, *, square: bool = True, what: str = "size"
) -> tuple[int, int] | None:
    """An image size as ``(width, height)``: ``"1918x1280"`` or ``(1918, 1280)``; ``"512"`` or ``512`` is
    ``(512, 512)`` when ``square``; ``None`` or ``""`` is ``None``. Anything else raises a one-line
    ``ValueError`` that calls the value ``what`` (the option it came from)."""
    if value is None or value == "":
        return None
    expected = "WxH, e.g. 1918x1280" if not square else "N or WxH, e.g. 512 or 1918x1280"
    if isinstance(value, int):
        values = [value, value] if square else [value]
    elif isinstance(value, str):
        parts = value.strip().lower().replace("×", "x").split("x")
        if not all(part.strip().isdigit() for part in parts):
            raise ValueError(f"{what} {value!r}: expected {expected}")
        values = [int(part) for part in parts]
        if square and len(values) == 1:
            values *= 2
    else:
        values = [int(item) for item in value]
    if len(values) != 2 or min(values) < 1:
        raise ValueError(f"{what} {value!r}: expected {expected}, with positive integers")
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
