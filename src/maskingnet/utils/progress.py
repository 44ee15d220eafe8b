"""Progress for long verbs: a tqdm bar on a terminal, plain lines in a log.

A tqdm bar redraws itself with carriage returns, which a redirected stderr keeps as one line of thousands of
characters. Off a terminal :func:`progress_bar` gives a :class:`LineProgress` instead: one line every
``every`` steps (about a tenth of the total by default) and one at the end.
"""

from __future__ import annotations

import math
import sys
import time
from typing import IO, Any

from tqdm import tqdm

LINES_PER_RUN = 10


class LineProgress:
    """The part of tqdm's interface the verbs use (``update``, ``close``, a context manager), written as
    ``desc: n/total unit (rate unit/s)`` lines."""

    def __init__(
        self,
        total: int,
        *,
        desc: str | None = None,
        unit: str = "img",
        initial: int = 0,
        every: int | None = None,
        file: IO[str] | None = None,
    ) -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.every = max(1, every or math.ceil(max(total, 1) / LINES_PER_RUN))
        self.file = file or sys.stderr
        self.started, self.initial, self.shown = time.perf_counter(), initial, initial
        self.closed = False
        self.postfix = ""

    def update(self, n: int = 1) -> None:
        before, self.n = self.n, self.n + n
        if self.n // self.every > before // self.every:
            self._line()

    def set_postfix(self, **values: Any) -> None:
        """``key=value`` pairs shown at the end of the next line (tqdm's ``set_postfix``)."""
        self.postfix = ", ".join(f"{key} {value}" for key, value in values.items())

    def close(self) -> None:
        if not self.closed and self.n != self.shown:
            self._line()
        self.closed = True

    def _line(self) -> None:
        self.shown = self.n
        seconds = time.perf_counter() - self.started
        rate = (self.n - self.initial) / seconds if seconds > 0 else 0.0
        head = f"{self.desc}: " if self.desc else ""
        left = ""
        if rate > 0 and self.n < self.total:
            left = f", {format_duration((self.total - self.n) / rate)} left"
        tail = f", {self.postfix}" if self.postfix else ""
        self.file.write(f"{head}{self.n}/{self.total} {self.unit} ({rate:.2f} {self.unit}/s{left}){tail}\n")
        self.file.flush()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def on_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def progress_bar(
    total: int,
    *,
    desc: str | None = None,
    unit: str = "img",
    enabled: bool = True,
    initial: int = 0,
    file: IO[str] | None = None,
) -> tqdm | LineProgress:
    """A tqdm bar when ``file`` (stderr) is a terminal, else :class:`LineProgress`; a silent bar when not
    ``enabled``."""
    file = file or sys.stderr
    if not enabled:
        return tqdm(total=total, disable=True)
    if on_terminal(file):
        return tqdm(total=total, desc=desc, unit=unit, initial=initial, file=file, dynamic_ncols=True)
    return LineProgress(total, desc=desc, unit=unit, initial=initial, file=file)


def format_duration(seconds: float) -> str:
    """``42 s``, ``13 min 5 s``, ``2 h 05 min``: short enough for a log line."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
