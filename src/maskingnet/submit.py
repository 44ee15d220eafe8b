"""Kaggle Carvana submissions: ``img,rle_mask`` rows for every test image, streamed, resumable, scalable.

Row order follows ``sample_submission.csv`` when it sits beside the test folder (Kaggle's layout), sorted file
names otherwise: then every file in the folder gets a row, those that are not usable images (empty, not an
image, corrupt) an empty mask and a line on stderr. Rows are written with the csv module's quoting, so a file
named ``a,b.jpg`` is one field. The photos go through the one inference pipeline
(:func:`maskingnet.inference.run`) into a :class:`~maskingnet.inference.RleSink`: each mask is the model's
probability map at the image's own resolution, thresholded and run-length encoded (``maskingnet.data.rle``),
the rows in order.

Re-running a finished submission: a hidden ``.<name>.done.json`` beside it records the fingerprint of the
model and settings that made it (:mod:`maskingnet.inference.fingerprint`); the same job again is not
recomputed, a changed one is redone with one line saying what changed.

Resuming: rows are appended to a hidden part file in chunks of ``flush_every`` rows; after each chunk is on
disk (fsync) a small progress file records how many rows and bytes are good. A killed run restarts from
there, cutting off any half-written chunk, so the finished file is complete and valid. For ``.csv.gz`` every
chunk is its own gzip member; concatenated members are one valid gzip stream (RFC 1952), so no chunk is ever
recompressed. Under ``torchrun`` each rank writes its own contiguous slice of the rows as its own part; rank 0
waits for every part to be complete and concatenates them in rank order, which is the submission order.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from maskingnet.inference import Predictor, RleSink, rank_predictor, run
from maskingnet.inference.fingerprint import describe_changes, fingerprint
from maskingnet.inference.settings import ModelSettings
from maskingnet.inference.sinks import csv_row
from maskingnet.runtime import context_from_env
from maskingnet.utils import atomic_write, open_own_file, parse_json
from maskingnet.utils.messages import one_line
from maskingnet.utils.progress import progress_bar

HEADER = csv_row("img", "rle_mask")
KAGGLE_TEST_IMAGES = 100_064


@dataclass
class SubmitConfig:
    """Options of ``maskingnet submit`` (see ``maskingnet submit --help``); ``model``: the model's
    settings, or just a checkpoint (run with the default settings)."""

    model: ModelSettings
    test_dir: Path
    out: Path
    threshold: float = 0.5
    batch_size: int = 4
    workers: int | None = None
    sample: Path | None = None
    flush_every: int = 64
    progress: bool = True
    poll_seconds: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelSettings):
            self.model = ModelSettings(self.model)


@dataclass
class SubmitSummary:
    """``rows`` in this rank's part (``resumed`` of them found on disk); ``failed`` rows got an empty mask."""

    out: Path
    rows: int = 0
    done: int = 0
    resumed: int = 0
    failed: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    merged: bool = False
    world: int = 1
    up_to_date: bool = False

    @property
    def images_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0


def sample_submission_path(test_dir: Path) -> Path:
    """Kaggle puts ``sample_submission.csv`` beside ``test/``."""
    return Path(test_dir).parent / "sample_submission.csv"


def read_sample_names(sample: Path) -> list[str]:
    """The ``img`` column of a sample submission, in its order."""
    with open(sample, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = [name.strip().lower() for name in next(reader, [])]
        if "img" not in header:
            raise ValueError(f"{sample}: no 'img' column in the header {header}")
        column = header.index("img")
        return [row[column] for row in reader if row]


def submission_order(test_dir: Path, sample: Path | None = None) -> list[tuple[str, Path]]:
    """(name, path) per row in submission order: the sample submission's names, else every file of the
    folder (hidden ones aside) by name. Files that are not usable images keep their row: the pipeline gives
    them an empty mask and a line."""
    test_dir = Path(test_dir)
    sample = Path(sample) if sample is not None else sample_submission_path(test_dir)
    if sample.is_file():
        return [(name, test_dir / name) for name in read_sample_names(sample)]
    if not test_dir.is_dir():
        raise FileNotFoundError(f"{test_dir}: no such folder (and no {sample.name} beside it)")
    files = [path for path in test_dir.iterdir() if not path.name.startswith(".") and path.is_file()]
    return sorted(((path.name, path) for path in files), key=lambda row: row[0])


def rank_slice(count: int, rank: int, world: int) -> slice:
    """Contiguous slice of ``count`` rows for ``rank``, so rank order is row order."""
    return slice(count * rank // world, count * (rank + 1) // world)


def part_files(out: Path, rank: int, world: int) -> tuple[Path, Path]:
    """(part file, progress file) of one rank, hidden beside the final output."""
    base = out.with_name(f".{out.name}.part{rank}of{world}")
    return base.with_name(base.name + ".partial"), base.with_name(base.name + ".progress.json")


def names_digest(names: Sequence[str]) -> str:
    return hashlib.sha1("\n".join(names).encode(errors="surrogateescape")).hexdigest()


def submission_settings(config: SubmitConfig, names: Sequence[str]) -> dict[str, Any]:
    """The model (by content) and every setting the rows depend on, with the rows' names."""
    return {
        **config.model.as_dict(),
        "threshold": config.threshold,
        "gzip": is_gzip(config.out),
        "rows": len(names),
        "names_sha1": names_digest(names),
    }


def job_fingerprint(
    config: SubmitConfig, names: Sequence[str], size: tuple[int, int], rank: int, world: int
) -> str:
    """What the part file's rows depend on; a resumed part is only reused when this matches."""
    job = {**submission_settings(config, names), "input_size": list(size), "rank": rank, "world": world}
    return hashlib.sha1(json.dumps(job, sort_keys=True).encode()).hexdigest()


def done_record_path(out: Path) -> Path:
    """Beside a finished submission: the fingerprint of the job that made it."""
    return out.with_name(f".{out.name}.done.json")


def record_done(out: Path, settings: dict[str, Any]) -> None:
    """Record which job made the finished ``out`` (and its size and time, to notice a replaced file)."""
    stat = out.stat()
    record = {
        "fingerprint": fingerprint(settings),
        "settings": settings,
        "bytes": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
    }
    with atomic_write(done_record_path(out), "w") as handle:
        json.dump(record, handle)


def earlier_submission(out: Path, settings: dict[str, Any]) -> tuple[bool, str | None]:
    """(whether ``out`` is a finished submission of this very job, why it is redone otherwise: None when
    there is no finished submission to redo)."""
    if not out.is_file():
        return False, None
    record = read_progress(done_record_path(out))
    stat = out.stat()
    if not record or (record.get("bytes"), record.get("mtime_ns")) != (stat.st_size, stat.st_mtime_ns):
        return False, "no record of the model and settings that made it"
    if record.get("fingerprint") == fingerprint(settings):
        return True, None
    changes = describe_changes(record.get("settings"), settings)
    return False, f"settings changed since the last run ({changes})" if changes else "settings changed"


def is_gzip(path: Path) -> bool:
    return Path(path).suffix.lower() == ".gz"


def read_progress(progress: Path) -> dict[str, Any]:
    try:
        state = parse_json(progress.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


class PartWriter:
    """Appends chunks of rows to a part file, recording after each fsync how far the file is good."""

    def __init__(self, partial: Path, progress: Path, fingerprint: str, gz: bool, expected_rows: int) -> None:
        self.partial, self.progress, self.fingerprint, self.gz = partial, progress, fingerprint, gz
        self.expected_rows = expected_rows
        state = read_progress(progress)
        usable = (
            state.get("fingerprint") == fingerprint
            and partial.is_file()
            and not partial.is_symlink()
            and partial.stat().st_size >= int(state.get("bytes", -1)) >= 0
        )
        self.discarded = bool(state) and not usable  # a part of another job (or a damaged one): redone
        self.rows = int(state["rows"]) if usable else 0
        self.bytes = int(state["bytes"]) if usable else 0
        partial.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open_own_file(partial, keep=usable)  # closed in close()
        self.handle.truncate(self.bytes)
        self.handle.seek(self.bytes)
        if not usable:
            self._record()

    @property
    def complete(self) -> bool:
        return self.rows >= self.expected_rows

    def write(self, text: str, rows: int) -> None:
        """Append one chunk (``rows`` rows of ``text``) durably, then record the new good length."""
        data = text.encode("utf-8")
        if self.gz:
            data = gzip.compress(data, compresslevel=6, mtime=0)
        self.handle.write(data)
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.bytes += len(data)
        self.rows += rows
        self._record()

    def _record(self) -> None:
        state = {
            "fingerprint": self.fingerprint,
            "rows": self.rows,
            "bytes": self.bytes,
            "complete": self.complete,
        }
        with atomic_write(self.progress, "w") as handle:
            json.dump(state, handle)

    def close(self) -> None:
        self.handle.close()


def _say(line: str) -> None:
    """One line on stderr, above the progress bar."""
    tqdm.write(one_line(line), file=sys.stderr)


def write_part(
    config: SubmitConfig,
    rows: list[tuple[str, Path]],
    first: int,
    writer: PartWriter,
    predictor: Predictor,
    summary: SubmitSummary,
    report: Callable[[str], None],
) -> None:
    """Predict rows ``first..`` of this rank's slice and append them to its part, in order."""
    todo = rows[first:]
    sink = RleSink([name for name, _ in todo], writer.write, config.threshold, config.flush_every, report)
    bar = progress_bar(len(rows), desc="submit", enabled=config.progress, initial=first)
    try:
        run(
            [path for _, path in todo],
            predictor,
            sink,
            batch_size=config.batch_size,
            workers=config.workers,
            tick=bar.update,
        )
    finally:
        bar.close()
        summary.done += sink.done
        summary.failed += sink.failed
        summary.problems += sink.problems


def part_is_done(progress: Path, fingerprint: str) -> bool:
    """A rank's part is finished, and belongs to the job with this fingerprint."""
    state = read_progress(progress)
    return bool(state.get("complete")) and state.get("fingerprint") == fingerprint


def merge_parts(out: Path, fingerprints: Sequence[str], poll_seconds: float) -> None:
    """Rank 0: wait until every rank's part of this job is complete, then join them in rank order.

    A part counts only when its progress file carries this job's fingerprint for that rank, so a finished
    part left by an earlier, different job is never taken for the current one.
    """
    world = len(fingerprints)
    parts = [part_files(out, rank, world) for rank in range(world)]
    while not all(part_is_done(progress, fingerprints[rank]) for rank, (_, progress) in enumerate(parts)):
        time.sleep(poll_seconds)
    if world == 1:
        os.replace(parts[0][0], out)
    else:
        with atomic_write(out) as handle:
            for partial, _progress in parts:
                with open(partial, "rb") as source:
                    shutil.copyfileobj(source, handle, length=1 << 22)
        for partial, _progress in parts:
            partial.unlink(missing_ok=True)
    for _partial, progress in parts:
        progress.unlink(missing_ok=True)


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def kaggle_estimate(summary: SubmitSummary) -> str:
    """One line: this run's throughput and what it means for Kaggle's 100,064 test images.

    Under torchrun this rank's rate times the number of ranks (they run side by side on equal slices).
    """
    world = summary.world
    rate = summary.images_per_second * world
    if rate <= 0:
        return "no images predicted in this run: no throughput to extrapolate from"
    return (
        f"{summary.done} images in {summary.seconds:.1f} s ({rate:.2f} img/s over {world} process(es)); "
        f"{KAGGLE_TEST_IMAGES:,} test images at this rate: ~{format_duration(KAGGLE_TEST_IMAGES / rate)}"
    )


def submit(config: SubmitConfig, report: Callable[[str], None] = _say) -> SubmitSummary:
    """Write the submission ``config.out`` (resuming a killed run); see the module docstring."""
    out = Path(config.out)
    summary = SubmitSummary(out=out)
    all_rows = submission_order(Path(config.test_dir), config.sample)
    ctx = context_from_env()
    rank, world = ctx.rank, ctx.world_size
    summary.world = world
    settings = submission_settings(config, [name for name, _ in all_rows])
    summary.up_to_date, redo = earlier_submission(out, settings)
    if summary.up_to_date:
        report(f"{out}: already complete with the same model and settings: nothing to do")
        return summary
    if redo and rank == 0:
        report(f"{out}: {redo}: redoing {len(all_rows)} rows")
    rows = all_rows[rank_slice(len(all_rows), rank, world)]
    predictor = rank_predictor(config.model, config.batch_size)
    partial, progress = part_files(out, rank, world)
    fingerprint = job_fingerprint(config, [name for name, _ in rows], predictor.size, rank, world)
    writer = PartWriter(partial, progress, fingerprint, is_gzip(out), expected_rows=len(rows))
    try:
        if rank == 0 and writer.bytes == 0:
            writer.write(HEADER, 0)
        summary.resumed = writer.rows
        if writer.discarded:
            report(
                f"{out}: the unfinished part found belongs to another job (checkpoint or options): redoing it"
            )
        if writer.rows:
            report(f"{out}: resuming after {writer.rows} of {len(rows)} rows")
        started = time.perf_counter()
        write_part(config, rows, writer.rows, writer, predictor, summary, report)
        summary.rows = writer.rows
    finally:
        writer.close()
    summary.seconds = time.perf_counter() - started
    if rank == 0:
        names = [name for name, _ in all_rows]
        fingerprints = [
            job_fingerprint(config, names[rank_slice(len(names), other, world)], predictor.size, other, world)
            for other in range(world)
        ]
        merge_parts(out, fingerprints, config.poll_seconds)
        record_done(out, settings)
        summary.merged = True
    return summary
