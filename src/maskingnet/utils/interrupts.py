"""Leaving at once on Ctrl-C (SIGINT) or SIGTERM: one line, the records flushed, every child gone, exit
130 or 143, whatever the moment (torch-free: the CLI installs it before anything else is imported).

Every output is written atomically and a rerun resumes, so nothing needs unwinding; leaving without
unwinding is what keeps a signal from hanging (in a logging lock, or joining writer threads and decoding
workers at exit). What a run keeps in memory and writes only now and then (the manifest's rows) registers
a flush with :func:`flushed_on_exit`; the handler calls it before leaving. Decoding workers ignore both
signals (:func:`ignore_in_worker`): a terminal sends Ctrl-C to the whole process group, and a worker that
left on its own made the main process see it die first ("DataLoader worker exited unexpectedly"); the
main process kills them instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from maskingnet.utils.processes import kill_children

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
WORDS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}
_flushers: list[Callable[[], None]] = []


@contextlib.contextmanager
def flushed_on_exit(flush: Callable[[], None]) -> Iterator[None]:
    """Within this block, a signal that ends the process calls ``flush`` first (it must be safe to call
    from the main thread at any moment: e.g. an atomic rewrite of a file)."""
    _flushers.append(flush)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            _flushers.remove(flush)


def _flush_all() -> None:
    for flush in list(_flushers):
        with contextlib.suppress(Exception):
            flush()


@contextlib.contextmanager
def leave_on_signals(name: str, hint: str = "") -> Iterator[None]:
    """Within this block (main thread only; elsewhere it does nothing), SIGINT and SIGTERM print
    ``name: interrupted`` (or ``terminated``) and ``hint``, kill the children, flush, and exit 130 or 143.
    A forked child that inherited the handler leaves silently with the same code."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()

    def leave(signum: int, _frame: Any) -> None:
        if os.getpid() == owner:
            _quiet_while_leaving()
            fresh_line = "\n" if os.isatty(2) else ""  # a progress bar may be mid-line
            with contextlib.suppress(OSError):
                os.write(2, f"{fresh_line}{name}: {WORDS[signum]}{hint}\n".encode(errors="replace"))
            _flush_all()
            kill_children()
        os._exit(EXIT_CODES[signum])

    previous = {signum: signal.signal(signum, leave) for signum in EXIT_CODES}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _quiet_while_leaving() -> None:
    """No handler may interrupt the leaving: a second Ctrl-C is ignored, and a child's end is no news
    (torch's SIGCHLD handler raised "DataLoader worker ... killed" in the middle of the manifest's
    flush)."""
    for signum in EXIT_CODES:
        signal.signal(signum, signal.SIG_IGN)
    if hasattr(signal, "SIGCHLD"):
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)


def ignore_in_worker(_worker_id: int = 0) -> None:
    """``worker_init_fn`` of decoding workers: SIGINT and SIGTERM are the main process's to act on."""
    for signum in EXIT_CODES:
        signal.signal(signum, signal.SIG_IGN)
