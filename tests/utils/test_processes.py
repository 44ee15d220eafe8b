"""Leaving on Ctrl-C: every child goes, including one multiprocessing has not registered yet."""

import os
import sys
import time

import pytest

from maskingnet.utils.processes import child_pids, kill_children

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def raw_child() -> int:
    """A child forked outside multiprocessing, as one is in the instant before it registers it."""
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    return pid


def test_a_child_multiprocessing_does_not_know_is_listed():
    pid = raw_child()
    try:
        assert pid in child_pids()
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


def test_kill_children_ends_an_unregistered_child_at_once():
    pid = raw_child()
    kill_children()
    started = time.monotonic()
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9
    assert time.monotonic() - started < 5
