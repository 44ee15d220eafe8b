"""``maskingnet bench``'s peer section: the bundled model against other background removers, same photos.

A shop choosing a background remover compares us with rembg (``rembg p -m u2netp``, its small model), and
where it is installed with IMG.LY's ``@imgly/background-removal-node`` (IS-Net, its default ``medium``
model). Each runs as a whole process, as a shop runs it, writing RGBA cut-outs of the same real photos: the
held-out cars of the model's training split (the val cars recorded in its metadata) at their own 1918x1280.

- Quality: one run of rembg and of ``maskingnet predict`` over every photo; the alpha of each cut-out,
  thresholded at 128, against the Carvana GIF mask: mean, median and minimum Dice. rembg with its alpha
  matting (``-a``) runs on the first few photos only (its matting takes seconds a photo), and so does
  IS-Net (about ten times rembg's compute a photo): scored on its timed run's photos, beside the others'
  Dice on the same photos.
- Speed: whole processes in alternating turns - each tool on one photo, then each on ``timing_photos``
  photos (IS-Net: fewer) - best of ``rounds``; start-up is the one-photo run, the cost of each extra photo
  is the difference over the extra photos, and ``speedup_per_photo`` is rembg's over ours. Peak RSS is the
  process's own (``os.wait4``).

The peers are never dependencies of maskingnet: ``make peer`` installs rembg in its own virtual environment
(``.venv-peer``) and places u2netp's weights there from a registry package that ships them (no download at
run time; the md5 is checked before rembg starts, so rembg never fetches them itself), and IMG.LY's package
(whose npm tarball carries its weights) beside it. When rembg or its weights are missing the section is
skipped with one line; a missing IMG.LY package skips its row with one line.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from maskingnet.data.carvana import Record, scan
from maskingnet.data.io import read_mask
from maskingnet.data.metrics import dice
from maskingnet.models import read_config, resolve_model

PEER_VENV = Path(".venv-peer")
U2NETP_MD5 = "8e83ca70e441ab06c318d82300c84806"  # the u2netp.onnx rembg itself downloads
ALPHA_THRESHOLD = 128
IMGLY_PACKAGE = "@imgly/background-removal-node"
IMGLY_SCRIPT = "imgly_cut.mjs"  # benchmarks/imgly_cut.mjs, copied beside the package by ``make peer``
PEERS = ("rembg", "imgly")


@dataclass(frozen=True)
class Tool:
    """A background remover run as a whole process: ``argv(inputs, out)`` cuts every photo in the folder
    ``inputs`` out into ``out``, and ``cutout(out, photo)`` is where the RGBA cut-out of ``photo`` lands."""

    name: str
    label: str
    argv: Callable[[Path, Path], list[str]]
    cutout: Callable[[Path, Path], Path]
    env: dict[str, str] = field(default_factory=dict)
    version: str = ""
    max_photos: int | None = None  # scored and timed on this many photos at most (a slow tool)


def maskingnet_tool(model: Path | None = None) -> Tool:
    """``maskingnet predict --save cutout`` with every other setting at its default."""
    extra = ["-m", str(model)] if model is not None else []

    def argv(inputs: Path, out: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "maskingnet",
            "predict",
            str(inputs),
            "--out",
            str(out),
            "--save",
            "cutout",
            "--no-progress",
            *extra,
        ]

    return Tool(
        "maskingnet",
        "maskingnet predict --save cutout",
        argv,
        lambda out, photo: out / f"{photo.stem}_cutout.png",
    )


def rembg_tool(rembg: Path, u2net_home: Path, alpha_matting: bool = False, version: str = "") -> Tool:
    """``rembg p -m u2netp`` (``-a``: with its alpha matting), its models read from ``u2net_home``."""
    flags = ["-a"] if alpha_matting else []

    def argv(inputs: Path, out: Path) -> list[str]:
        return [str(rembg), "p", "-m", "u2netp", *flags, str(inputs), str(out)]

    name = "rembg_u2netp" + ("_alpha_matting" if alpha_matting else "")
    label = "rembg p -m u2netp" + (" -a" if alpha_matting else "")
    return Tool(
        name,
        label,
        argv,
        lambda out, photo: out / f"{photo.stem}.png",
        env={"U2NET_HOME": str(u2net_home)},
        version=version,
    )


def imgly_tool(node: Path, folder: Path, version: str, max_photos: int, model: str = "medium") -> Tool:
    """IMG.LY's package on every photo of a folder (``benchmarks/imgly_cut.mjs``), ``model`` its IS-Net."""

    def argv(inputs: Path, out: Path) -> list[str]:
        return [str(node), str(folder / IMGLY_SCRIPT), model, str(inputs), str(out)]

    return Tool(
        "imgly_isnet",
        f"{IMGLY_PACKAGE} (IS-Net {model})",
        argv,
        lambda out, photo: out / f"{photo.stem}.png",
        version=version,
        max_photos=max_photos,
    )


# ---------------------------------------------------------------------------------------- finding peers


def find_rembg(venv: Path = PEER_VENV) -> Path | None:
    """rembg's command: in ``venv`` (what ``make peer`` installs), else on PATH."""
    local = venv / "bin" / "rembg"
    if local.is_file() and os.access(local, os.X_OK):
        return local.absolute()
    found = shutil.which("rembg")
    return Path(found) if found else None


def u2net_home(venv: Path = PEER_VENV) -> Path:
    """Where rembg reads its models: ``$U2NET_HOME``, else where ``make peer`` places them, else rembg's
    own default."""
    if os.environ.get("U2NET_HOME"):
        return Path(os.environ["U2NET_HOME"])
    if (venv / "u2net").is_dir():
        return (venv / "u2net").absolute()
    return Path.home() / ".u2net"


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def rembg_version(rembg: Path) -> str:
    try:
        done = subprocess.run([str(rembg), "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip().rsplit(" ", 1)[-1] if done.returncode == 0 else ""


def rembg_or_reason(venv: Path = PEER_VENV) -> tuple[Path, Path] | str:
    """(rembg's command, its model folder), or the one line saying why the section cannot run."""
    rembg = find_rembg(venv)
    if rembg is None:
        return f"rembg is not installed (`make peer` installs it in {venv})"
    home = u2net_home(venv)
    weights = home / "u2netp.onnx"
    if not weights.is_file():
        return f"{weights} is missing (`make peer` places it; rembg would download it)"
    if md5_of(weights) != U2NETP_MD5:
        return f"{weights}: md5 is not u2netp's {U2NETP_MD5} (`make peer` places the right file)"
    return rembg, home


def imgly_or_reason(venv: Path = PEER_VENV) -> tuple[Path, Path, str] | str:
    """(node, the folder holding IMG.LY's package and the script, its version), or why it cannot run."""
    node = shutil.which("node")
    folder = (venv / "imgly").absolute()
    package = folder / "node_modules" / IMGLY_PACKAGE / "package.json"
    if node is None:
        return "node is not installed"
    if not package.is_file() or not (folder / IMGLY_SCRIPT).is_file():
        return f"{IMGLY_PACKAGE} is not installed (`make peer` installs it in {folder} when npm is there)"
    return Path(node), folder, json.loads(package.read_text())["version"]


# ------------------------------------------------------------------------------------------- the photos


def held_out_records(data: Path, model: Path) -> list[Record]:
    """The photos of ``data`` whose cars the model's training held out (its meta's val cars), spread over
    the cars (first angle of each car, then the next ...), so that any prefix covers every car."""
    _, meta = read_config(model)
    cars = set((meta.get("split") or {}).get("val_cars") or [])
    records = [r for r in scan(data).records if r.car_id in cars and r.mask_path is not None]
    return sorted(records, key=lambda r: (r.angle or 0, r.car_id))


def link_photos(records: Sequence[Record], folder: Path) -> Path:
    """A folder holding (links to) exactly these photos: both tools take a folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for record in records:
        (folder / record.image_path.name).symlink_to(record.image_path.absolute())
    return folder


def alpha_dice(cutout: Path, truth: np.ndarray) -> float:
    """Dice of a cut-out's alpha (>= 128 is car) against the true mask. The cut-out is RGBA, or a palette
    PNG with transparency (what a quantizing encoder writes)."""
    with Image.open(cutout) as image:
        if image.mode not in ("RGBA", "LA", "P") or (image.mode == "P" and "transparency" not in image.info):
            raise ValueError(f"{cutout}: a cut-out should have an alpha channel ({image.mode} has none)")
        alpha = np.asarray(image.convert("RGBA").getchannel("A"))
    return float(dice(alpha >= ALPHA_THRESHOLD, truth))


# ------------------------------------------------------------------------------------------- processes


def run_process(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run a whole process to its end: (wall seconds, its peak RSS in MB). Raises with the last line of
    its stderr when it fails."""
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen(
            argv,
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=errors,
            stdin=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            errors.seek(0)
            lines = errors.read().decode(errors="replace").strip().splitlines() or ["(no message)"]
            raise RuntimeError(f"{argv[0]} {argv[1]} exited {process.returncode}: {lines[-1]}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports KB


def cut_out(tool: Tool, records: Sequence[Record], work: Path) -> tuple[Path, float, float]:
    """``tool`` over ``records`` in a fresh folder: (output folder, wall seconds, peak RSS MB)."""
    work.mkdir(parents=True, exist_ok=True)
    inputs = link_photos(records, Path(tempfile.mkdtemp(prefix="in-", dir=work)))
    out = Path(tempfile.mkdtemp(prefix=f"{tool.name}-", dir=work))
    seconds, rss = run_process(tool.argv(inputs, out), tool.env)
    return out, seconds, rss


def dice_scores(tool: Tool, records: Sequence[Record], out: Path) -> list[float]:
    scores = []
    for record in records:
        cutout = tool.cutout(out, record.image_path)
        if not cutout.is_file():
            raise RuntimeError(f"{tool.label} wrote no cut-out for {record.image_path.name}")
        scores.append(alpha_dice(cutout, read_mask(record.mask_path)))
    return scores


def quality(tool: Tool, records: Sequence[Record], work: Path) -> dict[str, Any]:
    """One run of ``tool`` over every photo: Dice figures, the worst photo, and the run's wall time."""
    out, seconds, rss = cut_out(tool, records, work)
    scores = dice_scores(tool, records, out)
    shutil.rmtree(out, ignore_errors=True)
    return {
        **dice_summary(tool, records, scores),
        "quality_run_seconds": round(seconds, 2),
        "quality_run_peak_rss_mb": round(rss),
    }


def dice_summary(tool: Tool, records: Sequence[Record], scores: list[float]) -> dict[str, Any]:
    worst = int(np.argmin(scores))
    return {
        "command": tool.label,
        **({"version": tool.version} if tool.version else {}),
        "photos": len(scores),
        "mean_dice": round(statistics.fmean(scores), 5),
        "median_dice": round(statistics.median(scores), 5),
        "min_dice": round(min(scores), 5),
        "worst_photo": records[worst].image_path.name,
        "dice_per_photo": {r.image_path.name: round(s, 5) for r, s in zip(records, scores, strict=True)},
    }


def timings(
    tools: Sequence[Tool],
    records: Sequence[Record],
    work: Path,
    rounds: int,
    say: Callable[[str], None],
    scored: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """Each tool as a whole process on the first photo and on all ``records`` (at most its
    ``max_photos``), in alternating turns, best of ``rounds``: start-up (one photo), seconds per extra
    photo, peak RSS. The tools named in ``scored`` also get the Dice of their first many-photo run."""
    best: dict[tuple[str, str], float] = {}
    rss: dict[str, float] = {}
    result: dict[str, dict[str, Any]] = {tool.name: {} for tool in tools}
    for round_ in range(rounds):
        for which in ("one", "many"):
            for tool in tools:
                photos = records[:1] if which == "one" else records[: tool.max_photos or len(records)]
                say(f"peer: {tool.label}, {len(photos)} photo(s), round {round_ + 1}/{rounds}")
                out, seconds, peak = cut_out(tool, photos, work)
                if which == "many" and round_ == 0 and tool.name in scored:
                    result[tool.name].update(dice_summary(tool, photos, dice_scores(tool, photos, out)))
                shutil.rmtree(out, ignore_errors=True)
                best[tool.name, which] = min(best.get((tool.name, which), float("inf")), seconds)
                rss[tool.name] = max(rss.get(tool.name, 0.0), peak)
    for tool in tools:
        count = len(records[: tool.max_photos or len(records)])
        one, many = best[tool.name, "one"], best[tool.name, "many"]
        per_extra = (many - one) / (count - 1) if count > 1 else None
        result[tool.name].update(
            {
                "timing_photos": count,
                "one_photo_s": round(one, 3),
                "many_photos_s": round(many, 3),
                "per_extra_photo_s": round(per_extra, 3) if per_extra is not None else None,
                "peak_rss_mb": round(rss[tool.name]),
            }
        )
    return result


# --------------------------------------------------------------------------------------------- section


def sha256_prefix(path: Path, length: int = 12) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def bench_peer(
    data: Path | None,
    model: Path | None = None,
    say: Callable[[str], None] = print,
    *,
    peers: Sequence[str] = PEERS,
    photos: int | None = None,
    timing_photos: int = 16,
    matting_photos: int = 4,
    slow_photos: int = 8,
    rounds: int = 2,
    venv: Path = PEER_VENV,
    records: Sequence[Record] | None = None,
    ours: Tool | None = None,
) -> dict[str, Any]:
    """The section (module docstring). ``photos`` caps the held-out photos scored (None: all of them),
    ``slow_photos`` those IS-Net runs on; ``records`` replaces the photos and ``ours`` the maskingnet
    command (tests). A dict with ``skipped`` (one line) when it cannot run."""
    found = rembg_or_reason(venv)
    if isinstance(found, str):
        return _skipped(found, say)
    if records is None and data is None:
        return _skipped("no real photos given (--data)", say)
    model_file = resolve_model(model)
    chosen = list(records) if records is not None else held_out_records(data, model_file)[:photos]
    if not chosen:
        return _skipped(f"none of {model_file.name}'s held-out cars in {data}", say)
    rembg, home = found
    version = rembg_version(rembg)
    ours, theirs = ours or maskingnet_tool(model), rembg_tool(rembg, home, version=version)
    matting = rembg_tool(rembg, home, alpha_matting=True, version=version)
    timed_tools, section = [theirs, ours], {}
    if "imgly" in peers:
        _add_imgly(venv, slow_photos, say, section, timed_tools)
    with tempfile.TemporaryDirectory(prefix="maskingnet-peer-") as tmp:
        work = Path(tmp)
        for tool in (theirs, ours):
            say(f"peer: {tool.label} on {len(chosen)} held-out photos (Dice)")
            section[tool.name] = quality(tool, chosen, work)
        few = chosen[:matting_photos]
        if few:
            say(f"peer: {matting.label} on {len(few)} photos (Dice)")
            section[matting.name] = quality(matting, few, work)
        timed = chosen[: max(2, min(timing_photos, len(chosen)))]
        slow = [tool.name for tool in timed_tools[2:]]
        speed = timings(timed_tools, timed, work, rounds, say, scored=slow)
    _compare(section, speed, timed_tools, [matting.name, *slow], slow, ours.name)
    return {
        "photos": len(chosen),
        "photo_size": _photo_size(chosen[0]),
        "cars": sorted({r.car_id for r in chosen}),
        "model": f"{model_file.name} (sha256 {sha256_prefix(model_file)})",
        "timing_photos": len(timed),
        "rounds": rounds,
        "u2netp_md5": U2NETP_MD5,
        **section,
        "speedup_per_photo": _ratio(speed[theirs.name], speed[ours.name], "per_extra_photo_s"),
        "speedup_one_photo": _ratio(speed[theirs.name], speed[ours.name], "one_photo_s"),
        "timing": "whole processes writing RGBA cut-outs, alternating turns, best of rounds, wall clock",
    }


def _add_imgly(
    venv: Path, slow_photos: int, say: Callable[[str], None], section: dict[str, Any], timed_tools: list[Tool]
) -> None:
    """IS-Net timed beside the others where it is installed; else its row says why not."""
    imgly = imgly_or_reason(venv)
    if isinstance(imgly, str):
        say(f"peer: IS-Net row skipped, {imgly}")
        section["imgly_isnet"] = {"skipped": imgly}
    else:
        timed_tools.append(imgly_tool(*imgly, max_photos=slow_photos))


def _compare(
    section: dict[str, Any],
    speed: dict[str, Any],
    timed_tools: Sequence[Tool],
    scored_beside: Sequence[str],
    slow: Sequence[str],
    ours: str,
) -> None:
    """Each tool's timings into its row; the rows scored on fewer photos beside ours on the same ones; the
    slow tools' speed-up of ours."""
    for tool in timed_tools:
        section.setdefault(tool.name, {}).update(speed[tool.name])
    for name in scored_beside:
        if name in section and "dice_per_photo" in section[name]:
            _beside(section, name)
    for name in slow:
        section[name]["maskingnet_speedup_per_photo"] = _ratio(speed[name], speed[ours], "per_extra_photo_s")


def _skipped(reason: str, say: Callable[[str], None]) -> dict[str, str]:
    say(f"peer: skipped, {reason}")
    return {"skipped": reason}


def _beside(section: dict[str, Any], name: str) -> None:
    """rembg's and maskingnet's mean Dice on the photos that row ``name`` was scored on."""
    photos = section[name]["dice_per_photo"]
    for other in ("rembg_u2netp", "maskingnet"):
        scores = section[other]["dice_per_photo"]
        section[name][f"{other}_same_photos"] = round(statistics.fmean(scores[photo] for photo in photos), 5)


def _ratio(slow: dict[str, Any], fast: dict[str, Any], key: str) -> float | None:
    """How many times ``fast``'s ``key`` goes into ``slow``'s (None where either is missing)."""
    if slow.get(key) is None or not fast.get(key):
        return None
    return round(slow[key] / fast[key], 2)


def _photo_size(record: Record) -> str:
    with Image.open(record.image_path) as image:
        return f"{image.width}x{image.height}"


def peer_markdown(section: dict[str, Any] | None) -> list[str]:
    """The section as Markdown: one line when skipped, nothing when it did not run."""
    if not section:
        return []
    if "skipped" in section:
        return ["## Peers: rembg", "", f"Skipped: {section['skipped']}.", ""]
    rows = [section[name] for name in ("rembg_u2netp", "maskingnet", "imgly_isnet") if name in section]
    lines = [
        f"## Peers: rembg and others against maskingnet ({section['photos']} held-out photos at "
        f"{section['photo_size']}, cars {', '.join(section['cars'])})",
        "",
        f"Model: {section['model']}. Whole processes writing RGBA cut-outs; Dice of the alpha (>= 128) "
        f"against the GIF mask; times best of {section['rounds']} alternating rounds (one photo, then "
        f"{section['timing_photos']} or the row's photos).",
        "",
        "| tool | photos | mean Dice | median | min | one photo, s | per extra photo, s | peak RSS, MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if "skipped" in row:
            continue
        lines.append(
            f"| `{row['command']}` | {row['photos']} | {row['mean_dice']:.4f} | {row['median_dice']:.4f} "
            f"| {row['min_dice']:.4f} | {row['one_photo_s']:.2f} | {_seconds(row['per_extra_photo_s'])} "
            f"| {row['peak_rss_mb']} |"
        )
    lines += [
        "",
        f"Per extra photo maskingnet is {_times(section['speedup_per_photo'])} as fast as rembg "
        f"(one photo, start-up included: {_times(section['speedup_one_photo'])}).",
    ]
    matting = section.get("rembg_u2netp_alpha_matting")
    if matting:
        lines.append(
            f"rembg with alpha matting (`-a`): mean Dice {matting['mean_dice']:.4f}{_same(matting)}."
        )
    isnet = section.get("imgly_isnet")
    if isnet and "skipped" in isnet:
        lines.append(f"IS-Net row skipped: {isnet['skipped']}.")
    elif isnet:
        lines.append(
            f"IS-Net{_same(isnet)}; per extra photo maskingnet is "
            f"{_times(isnet['maskingnet_speedup_per_photo'])} as fast."
        )
    return lines + [""]


def _same(row: dict[str, Any]) -> str:
    return (
        f" on {row['photos']} photos, where rembg plain has {row['rembg_u2netp_same_photos']:.4f} and "
        f"maskingnet {row['maskingnet_same_photos']:.4f}"
    )


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _times(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}x"
