"""Reading photos and masks deliberately, whatever arrives: every image becomes RGB, every failure one line.

``read_image`` turns grey, palette, CMYK, RGBA (alpha dropped, not composited), 16-bit and EXIF-rotated
photos into upright 8-bit RGB, decoding JPEGs at reduced scale when a target size allows it. Zero-byte,
truncated, unreadable and not-an-image files, and decompression bombs, raise ``BadInputError`` whose text is
``"path: what is wrong"`` (the form every command prints). ``list_images`` expands files, folders and globs
and recognises images by their bytes, not their names.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import io
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from stat import S_ISDIR, S_ISREG
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from maskingnet.data.jpeg_scans import DEFAULT_MAX_SCANS, too_many_scans
from maskingnet.errors import MaskingnetError

DEFAULT_MAX_PIXELS = 200_000_000
"""Largest image accepted (width x height), above which a file is treated as a decompression bomb."""

ImageSource = str | os.PathLike | bytes | BinaryIO
"""A file path, the file's bytes, or an open binary stream."""
BYTES_NAME = "<bytes>"
STREAM_NAME = "<stream>"
_ORIENTATION_TAG = 0x0112
_TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}
_LOSSY_FORMATS = {"JPEG", "MPO"}
_MAGIC = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"II*\x00",  # TIFF little-endian
    b"MM\x00*",  # TIFF big-endian
)
_READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError)


class BadInputError(MaskingnetError, ValueError):
    """A file that cannot be used as an image; ``str(error)`` is ``"path: reason"``."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def read_image(
    path: ImageSource,
    target_size: tuple[int, int] | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Read ``path`` (a file, its bytes, or an open binary stream) as an upright 8-bit RGB image.

    With ``target_size`` = (W, H), a JPEG is decoded at the smallest 1/2, 1/4 or 1/8 scale that is still at
    least that large and divides its size exactly (``PIL.Image.draft``); resizing to the target is the
    caller's job. EXIF orientation is applied. Grey, palette, CMYK, RGBA/LA (alpha dropped), 16-bit and
    float images are converted (16-bit scaled by 1/257). Raises ``BadInputError`` for anything that is
    not a usable image.
    """
    with _open_image(path, max_pixels) as (image, where):
        if target_size is not None:
            _draft(image, target_size)
        _load(image, where)
        image = _upright(image)
        return _to_rgb(image, where)


def read_mask(path: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a mask as an (H, W) bool array: any non-zero pixel is car (0/1 and 0/255 both work).

    Palette images (Carvana's GIFs) are read by palette index; colour images count a pixel as car when any
    colour channel is non-zero (alpha is ignored); lossy JPEG masks are thresholded at 128 so that
    compression noise does not become car.
    """
    with _open_image(path, max_pixels) as (image, where):
        _load(image, where)
        lossy = image.format in _LOSSY_FORMATS
        image = _upright(image)
        values = _mask_values(image, where)
    return values >= 128 if lossy else values != 0


def image_size(path: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(width, height) of the upright image, from its header only (no pixels are decoded)."""
    with _open_image(path, max_pixels) as (image, _):
        size = image.size
        if _header_orientation(image) in _TRANSPOSED_ORIENTATIONS:
            size = (size[1], size[0])
        return size


def list_images(
    inputs: str | os.PathLike | Iterable[str | os.PathLike], recursive: bool = True
) -> tuple[list[Path], list[str]]:
    """Expand files, folders and glob patterns into image files, recognised by content.

    Returns ``(paths, problems)``: paths in input order (folders sorted), without duplicates; one
    ``"path: what is wrong"`` line (a :class:`Problem`) per unusable input, each once: missing, empty, not an
    image, a folder with no image in it, a pattern that matches nothing, a dangling symbolic link, a link
    loop, a folder named like an image (not descended into, or holding no image). Links to folders are
    followed. Inside folders and glob matches, files that are neither images nor named like images are
    passed over quietly, as are hidden files (names starting with a dot).
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths: list[Path] = []
    problems: list[str] = []
    for item in inputs:
        found, trouble = _expand(Path(item), str(item), recursive)
        paths.extend(found)
        problems.extend(trouble)
    return _unique(paths), list(dict.fromkeys(problems))


def sniff_image(path: Path) -> str | None:
    """None when ``path`` holds an image, else why not.

    Decided by the first bytes (JPEG, PNG, GIF, BMP, TIFF, WebP, PNM); files named like another format PIL
    reads are asked of PIL (header only)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError as error:
        return f"cannot read ({error.strerror or error})"
    if not head:
        return "empty file (0 bytes)"
    if _has_image_signature(head):
        return None
    if path.suffix.lower() not in Image.registered_extensions():
        return "not an image"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path):
                return None
    except (UnidentifiedImageError, *_READ_ERRORS, Image.DecompressionBombError):
        return "not an image (unrecognised content)"


def _has_image_signature(head: bytes) -> bool:
    """JPEG, PNG, GIF, TIFF, WebP, BMP (with its reserved bytes zero) or binary/ASCII PNM (P1..P6 + space)."""
    if head.startswith(_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return True
    if head[:2] == b"BM" and len(head) >= 10 and head[6:10] == b"\x00\x00\x00\x00":
        return True
    return len(head) >= 3 and head[:1] == b"P" and head[1:2] in b"123456" and head[2:3].isspace()


@contextlib.contextmanager
def _open_image(source: ImageSource, max_pixels: int) -> Iterator[tuple[Image.Image, str | os.PathLike]]:
    """The image with its header checked, and the name to use in messages. Files are opened by us, so the
    decoded image outlives the handle; bytes and open binary streams work too (uploads)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise BadInputError(BYTES_NAME, "empty file (0 bytes)")
        yield _identify(io.BytesIO(source), BYTES_NAME, max_pixels), BYTES_NAME
    elif hasattr(source, "read"):
        name = getattr(source, "name", STREAM_NAME)
        yield _identify(source, name, max_pixels), name
    else:
        with _open_file(source) as handle:
            yield _identify(handle, source, max_pixels), source


def _open_file(path: str | os.PathLike) -> BinaryIO:
    try:
        if os.path.isdir(path):
            raise BadInputError(path, "is a folder, not an image")
        if os.path.getsize(path) == 0:
            raise BadInputError(path, "empty file (0 bytes)")
        return open(path, "rb")
    except FileNotFoundError:
        raise BadInputError(path, "no such file") from None
    except PermissionError:
        raise BadInputError(path, "cannot read (permission denied)") from None
    except OSError as error:
        raise BadInputError(path, f"cannot read ({error.strerror or error})") from None


def _identify(handle: BinaryIO, path: str | os.PathLike, max_pixels: int) -> Image.Image:
    _allow_pil_up_to(max_pixels)
    start = handle.tell()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(handle)
    except Image.DecompressionBombError:
        raise BadInputError(path, f"decompression bomb (more than {max_pixels:,} pixels)") from None
    except UnidentifiedImageError:
        raise BadInputError(path, "not an image (unrecognised content)") from None
    except _READ_ERRORS as error:
        raise BadInputError(path, f"corrupt image header ({error})") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise BadInputError(path, f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise BadInputError(
            path, f"decompression bomb ({width}x{height} = {width * height:,} pixels, limit {max_pixels:,})"
        )
    if image.format in _LOSSY_FORMATS:
        _check_scans(handle, start, path)
    return image


def _check_scans(handle: BinaryIO, start: int, path: str | os.PathLike) -> None:
    """Refuse a JPEG with more scans than :data:`DEFAULT_MAX_SCANS` before decoding it (each scan costs a
    walk over the whole photo, however few bytes it takes); the handle is left where it was."""
    where = handle.tell()
    try:
        handle.seek(start)
        refused = too_many_scans(handle.read(), DEFAULT_MAX_SCANS)
    except (OSError, ValueError) as error:
        raise BadInputError(path, f"cannot read ({error})") from None
    finally:
        handle.seek(where)
    if refused:
        raise BadInputError(
            path,
            f"decompression bomb (a JPEG of more than {DEFAULT_MAX_SCANS} scans; "
            "each is a pass over the whole photo)",
        )


def _allow_pil_up_to(max_pixels: int) -> None:
    """PIL refuses images above 2 x ``Image.MAX_IMAGE_PIXELS`` by itself; lift that to our own limit so the
    caller's ``max_pixels`` is the one that decides (our check still runs on every image)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and 2 * limit < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels // 2 + 1


def _draft(image: Image.Image, target_size: tuple[int, int]) -> None:
    """Ask the JPEG decoder for the largest 1/2, 1/4 or 1/8 scale that still covers ``target_size`` and
    divides the photo's size exactly: an inexact scale (1918 / 4 = 479.5) would pad the last pixel column
    and shift every pixel's position by up to 2 original pixels against its coordinate maps and mask."""
    if image.format not in _LOSSY_FORMATS:
        return
    want_w, want_h = target_size
    if _header_orientation(image) in _TRANSPOSED_ORIENTATIONS:
        want_w, want_h = want_h, want_w
    width, height = image.size
    for scale in (8, 4, 2):
        if width % scale or height % scale or width // scale < want_w or height // scale < want_h:
            continue
        try:
            image.draft(image.mode, (width // scale, height // scale))
        except _READ_ERRORS:
            pass
        return


def _load(image: Image.Image, path: str | os.PathLike) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image.load()
    except _READ_ERRORS as error:
        reason = str(error) or type(error).__name__
        if "truncated" in reason or isinstance(error, EOFError):
            raise BadInputError(path, f"truncated image ({reason})") from None
        raise BadInputError(path, f"corrupt image data ({reason})") from None


def _header_orientation(image: Image.Image) -> int:
    """EXIF orientation without decoding pixels, by the same rule as ``_upright`` on the decoded image.

    PIL's PNG reader loads the whole image to find an eXIf chunk stored after the pixel data, so for a PNG
    the chunks are walked instead (skipping their data); otherwise only EXIF found in the header (or TIFF
    tags) is used."""
    if "exif" in image.info or hasattr(image, "tag_v2"):
        return _orientation(image)
    if image.format == "PNG":
        return _trailing_png_orientation(image)
    return 1


def _trailing_png_orientation(image: Image.Image) -> int:
    """Orientation from an eXIf chunk after the pixel data, read by seeking from chunk to chunk."""
    handle = getattr(image, "fp", None)
    if handle is None:
        return 1
    where = handle.tell()
    try:
        data = _find_png_chunk(handle, b"eXIf")
    except (OSError, ValueError):
        data = None
    finally:
        handle.seek(where)
    if not data:
        return 1
    exif = Image.Exif()
    try:
        exif.load(data)
        return int(exif.get(_ORIENTATION_TAG, 1))
    except _READ_ERRORS:
        return 1


def _find_png_chunk(handle: BinaryIO, wanted: bytes, max_chunks: int = 100_000) -> bytes | None:
    """The data of the first ``wanted`` chunk of a PNG, or None; stops at IEND, at a broken chunk, or after
    ``max_chunks`` chunks (a file made of millions of tiny chunks costs a bounded walk)."""
    handle.seek(8)
    for _ in range(max_chunks):
        header = handle.read(8)
        if len(header) < 8:
            return None
        length, kind = int.from_bytes(header[:4], "big"), header[4:]
        if kind == wanted:
            return handle.read(min(length, 1 << 20))
        if kind == b"IEND":
            return None
        handle.seek(length + 4, os.SEEK_CUR)
    return None


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_ORIENTATION_TAG, 1))
    except _READ_ERRORS:
        return 1


def _upright(image: Image.Image) -> Image.Image:
    """Apply EXIF orientation; a broken EXIF block leaves the image as stored rather than failing it."""
    if _orientation(image) == 1:
        return image
    try:
        return ImageOps.exif_transpose(image)
    except _READ_ERRORS:
        return image


def _to_rgb(image: Image.Image, path: str | os.PathLike) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":
        return Image.fromarray(_to_uint8(np.asarray(image), image.mode)).convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA")
    try:
        return image.convert("RGB")
    except ValueError:
        raise BadInputError(path, f"unsupported colour mode {image.mode}") from None


def _to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """16-bit and 32-bit integer images are scaled 65535 -> 255; float images in 0..1 are scaled to 0..255,
    other float images clipped."""
    values = values.astype(np.float64)
    if mode == "F":
        if np.nanmax(values, initial=0.0) <= 1.0:
            values = values * 255.0
    elif mode.startswith("I;16") or np.max(values, initial=0) > 255:
        values = values / 257.0
    return np.clip(np.nan_to_num(values), 0, 255).round().astype(np.uint8)


def _mask_values(image: Image.Image, path: str | os.PathLike) -> np.ndarray:
    if image.mode in ("P", "PA"):
        return np.asarray(image.convert("P") if image.mode == "PA" else image)
    if image.mode in ("1", "L", "F") or image.mode.startswith("I"):
        return np.asarray(image)
    if image.mode in ("LA", "La"):
        return np.asarray(image)[..., 0]
    try:
        rgb = np.asarray(image.convert("RGB"))
    except ValueError:
        raise BadInputError(path, f"unsupported colour mode {image.mode} for a mask") from None
    return rgb.max(axis=2)


class Problem(str):
    """One ``"path: what is wrong"`` line of :func:`list_images`; ``path`` is the file or link it is about,
    or None when it is about a folder or a pattern as a whole (no images in it, no match)."""

    path: Path | None

    def __new__(cls, where: str | os.PathLike, reason: str, photo: bool = True) -> Problem:
        line = super().__new__(cls, f"{where}: {reason}")
        line.path = Path(where) if photo else None
        return line


def _expand(path: Path, text: str, recursive: bool) -> tuple[list[Path], list[str]]:
    if path.is_dir():
        return _scan_folder(path, recursive)
    if path.is_file():
        reason = sniff_image(path)
        return ([path], []) if reason is None else ([], [Problem(path, reason)])
    if glob.has_magic(text):
        return _expand_glob(text, recursive)
    return [], [Problem(path, _missing_reason(path))]


def _missing_reason(path: Path) -> str:
    """Why a path that is neither a file nor a folder cannot be used."""
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symbolic link loop"
        if path.is_symlink():
            return f"dangling symbolic link (to {os.readlink(path)})"
        if isinstance(error, FileNotFoundError):
            return "no such file or folder"
        return f"cannot read ({error.strerror or error})"
    return "not a regular file"


def _scan_folder(folder: Path, recursive: bool) -> tuple[list[Path], list[str]]:
    """The images under ``folder``; a folder with no image at all is a problem of its own."""
    found: list[Path] = []
    problems: list[str] = []
    _walk(folder, recursive, {_folder_id(folder)}, found, problems)
    if not found and not problems:
        problems.append(Problem(folder, "no images in this folder", photo=False))
    return found, problems


def _folder_id(folder: Path) -> tuple[int, int]:
    stat = os.stat(folder)
    return stat.st_dev, stat.st_ino


def _walk(folder: Path, recursive: bool, above: set[tuple[int, int]], found: list, problems: list) -> None:
    """Depth first, names sorted (the order of sorted paths), hidden names passed over. Symbolic links are
    followed; one that leads back to a folder above it (a loop), a dangling one and a folder named like an
    image (when not descending, or when it holds no image) are reported."""
    try:
        names = sorted(entry.name for entry in os.scandir(folder))
    except OSError as error:
        problems.append(Problem(folder, f"cannot list this folder ({error.strerror or error})", photo=False))
        return
    for name in names:
        if name.startswith("."):
            continue
        path = folder / name
        try:
            stat = os.stat(path)
        except OSError:
            problems.append(Problem(path, _missing_reason(path)))
            continue
        if S_ISDIR(stat.st_mode):
            if (stat.st_dev, stat.st_ino) in above:
                problems.append(Problem(path, "symbolic link loop (leads back to a folder above it)"))
            elif recursive:
                before = len(found)
                _walk(path, recursive, above | {(stat.st_dev, stat.st_ino)}, found, problems)
                if len(found) == before and _named_like_an_image(path):
                    problems.append(Problem(path, "is a folder, not an image (and holds none)"))
            elif _named_like_an_image(path):
                problems.append(Problem(path, "is a folder, not an image"))
        elif S_ISREG(stat.st_mode):
            _take_quietly(path, found, problems)
        elif _named_like_an_image(path):
            problems.append(Problem(path, "not a regular file"))


def _named_like_an_image(path: Path) -> bool:
    return path.suffix.lower() in Image.registered_extensions()


def _expand_glob(pattern: str, recursive: bool) -> tuple[list[Path], list[str]]:
    matches = sorted(glob.glob(pattern, recursive=True))
    if not matches:
        return [], [Problem(pattern, "no file matches this pattern", photo=False)]
    found: list[Path] = []
    problems: list[str] = []
    for match in map(Path, matches):
        if match.is_dir():
            more, trouble = _scan_folder(match, recursive)
            found.extend(more)
            problems.extend(trouble)
        elif match.is_file():
            _take_quietly(match, found, problems)
        else:
            problems.append(Problem(match, _missing_reason(match)))
    return found, problems


def _take_quietly(path: Path, found: list[Path], problems: list[str]) -> None:
    """Keep an image; report a file named like an image that is not one; pass over anything else."""
    reason = sniff_image(path)
    if reason is None:
        found.append(path)
    elif _named_like_an_image(path):
        problems.append(Problem(path, reason))


def _unique(paths: list[Path]) -> list[Path]:
    seen: set[Path] = set()
    unique: list[Path] = []
    for path in paths:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique
