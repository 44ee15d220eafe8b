"""Careless-operator cases (issue 15, items 6-8): two runs on one output folder, EXIF orientation after
the pixels, file modes of saved checkpoints, Ctrl-C."""

from __future__ import annotations

import subprocess
import sys

from maskingnet.predict import remove_stale_temps


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_second_run_keeps_the_in_flight_temp_files_of_a_live_run(tmp_path):
    target = tmp_path / "car.png"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        in_flight = tmp_path / f".car.{live.pid}.tmp.png"
        stale = tmp_path / f".car.{dead_pid()}.tmp.png"
        in_flight.write_bytes(b"half")
        stale.write_bytes(b"left")
        remove_stale_temps(tmp_path, [target])
        assert in_flight.exists()
        assert not stale.exists()
    finally:
        live.kill()
        live.wait()
