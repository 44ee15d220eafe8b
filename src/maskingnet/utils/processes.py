"""The processes a run starts, and leaving them all at once (torch-free: the CLI imports it at start)."""

from __future__ import annotations

import multiprocessing
import os
import signal


def child_pids() -> set[int]:
    """Every live child of this process, registered with :mod:`multiprocessing` or not.

    A child forked in the instant before a signal handler runs is not yet in ``active_children()``; on
    Linux ``/proc`` still lists it, so a Ctrl-C can never leave a decoding worker behind."""
    pids = {child.pid for child in multiprocessing.active_children() if child.pid is not None}
    own = os.getpid()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return pids
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and int(fields[1]) == own:
            pids.add(int(entry))
    return pids


def kill_children() -> None:
    """SIGKILL every child (see :func:`child_pids`); for leaving at once on Ctrl-C."""
    for pid in child_pids():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs now (signal 0 checks without sending anything). On Windows
    ``os.kill`` would end the process instead, so every owner counts as alive there."""
    if pid <= 0:
        return False
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's process, or we cannot tell: leave its files alone
    return True
