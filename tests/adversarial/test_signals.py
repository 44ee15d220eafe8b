"""SIGINT and SIGTERM at random moments of ``predict --workers 2``, ``submit`` and ``evaluate``: one line,
exit 130 or 143, no process of the run left, the manifest flushed, every time. Bounded: a handful of runs
on tiny photos, each signalled within a few seconds of its start."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import make_half_car_checkpoint
from PIL import Image

WORDS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}
CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
RESUME = "; run the same command again to resume"
IN_FLIGHT = 12


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_half_car_checkpoint(tmp_path_factory.mktemp("signals") / "tiny.safetensors")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """200 names for one small photo and its mask (hard links), as images/ + masks/: more work than the
    runs here are given time for."""
    root = tmp_path_factory.mktemp("labelled")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    Image.new("RGB", (160, 120), (90, 120, 150)).save(root / "images" / "car000.png")
    Image.new("L", (160, 120), 255).save(root / "masks" / "car000.png")
    for index in range(1, 200):
        for kind in ("images", "masks"):
            os.link(root / kind / "car000.png", root / kind / f"car{index:03d}.png")
    return root


def group_members(group: int) -> list[int]:
    """Live (not zombie) processes whose process group is ``group``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group and fields[0] != b"Z":
            members.append(int(entry))
    return members


def signalled(args: list[str], signum: int, moment, whole_group: bool) -> tuple[int, str]:
    """(exit code, stderr) of ``maskingnet ARGS`` sent ``signum`` when ``moment()`` (polled) is true: to
    its whole process group (a terminal's Ctrl-C) or to the main process only (``kill PID``). Asserts that
    no process of the run is left a second later."""
    run = subprocess.Popen(
        [sys.executable, "-m", "maskingnet", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and run.poll() is None and not moment():
            time.sleep(0.02)
        assert run.poll() is None, "the run ended before the signal"
        if whole_group:
            os.killpg(run.pid, signum)
        else:
            run.send_signal(signum)
        _, stderr = run.communicate(timeout=30)
        deadline = time.monotonic() + 1
        while group_members(run.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert group_members(run.pid) == [], f"left behind after {signal.Signals(signum).name}"
    finally:
        run.kill()
        for pid in group_members(run.pid):
            os.kill(pid, signal.SIGKILL)
    return run.returncode, stderr


def after(seconds: float, condition=lambda: True):
    """A moment: ``seconds`` after ``condition`` first holds."""
    since: list[float] = []

    def moment() -> bool:
        if not since and condition():
            since.append(time.monotonic())
        return bool(since) and time.monotonic() - since[0] >= seconds

    return moment


def manifest_rows(out: Path) -> int:
    path = out / "manifest.csv"
    if not path.is_file():
        return 0
    with path.open(newline="", encoding="utf-8") as handle:
        return sum(1 for row in csv.DictReader(handle) if row.get("status") == "done")


def test_predict_leaves_cleanly_on_sigint_and_sigterm_at_random_moments(checkpoint, photos, tmp_path):
    """Two runs signalled while starting (imports, model, first decodes), two while writing outputs."""
    moments = random.Random(23)
    for attempt in range(4):
        signum = signal.SIGINT if attempt % 2 == 0 else signal.SIGTERM
        out = tmp_path / f"out{attempt}"
        if attempt < 2:
            moment = after(moments.uniform(0.5, 1.5))
        else:
            moment = after(moments.uniform(0.0, 0.3), lambda out=out: len(list(out.glob("*_mask.png"))) >= 20)
        args = ["predict", str(photos / "images"), "--out", str(out), "--save", "mask", "--workers", "2"]
        whole_group = signum == signal.SIGINT
        code, stderr = signalled([*args, "--no-progress", "-m", str(checkpoint)], signum, moment, whole_group)
        lines = stderr.strip().splitlines()
        assert code == CODES[signum], stderr
        assert len(lines) == 1 and lines[0] in (
            f"predict: {WORDS[signum]}{RESUME}",
            f"predict: {WORDS[signum]}",
        )
        written = len(list(out.glob("*_mask.png")))
        # every output has its row but those still in flight (at most 2 x 4 writer threads + a batch of 4);
        # unflushed, the manifest of a run this short would not exist at all
        assert manifest_rows(out) >= written - IN_FLIGHT, (written, manifest_rows(out))
        assert attempt < 2 or written >= 20


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_submit_and_evaluate_leave_in_one_line(checkpoint, photos, tmp_path, signum):
    runs = {
        "submit": [
            "submit",
            str(photos / "images"),
            "--out",
            str(tmp_path / "sub.csv"),
            "--flush-every",
            "8",
        ],
        "evaluate": ["evaluate", "--data", str(photos), "--split", "all", "--out", str(tmp_path / "eval")],
    }
    # a fixed delay is no moment: on a quiet machine both runs are done within 3 s; submit is signalled
    # once its first chunk of rows is on disk, evaluate while it starts (importing torch alone takes longer)
    moments = {
        "submit": after(0.0, lambda: any(tmp_path.glob(".sub.csv.part*.partial"))),
        "evaluate": after(1.0),
    }
    for name, args in runs.items():
        code, stderr = signalled(
            [*args, "--no-progress", "-m", str(checkpoint)], signum, moments[name], whole_group=False
        )
        hint = RESUME if name == "submit" else ""
        assert code == CODES[signum]
        assert stderr.strip().splitlines() == [f"{name}: {WORDS[signum]}{hint}"], stderr


def test_serve_on_sigterm_answers_what_it_cannot_finish_with_503_and_no_tracebacks(checkpoint, tmp_path):
    """Requests still running when uvicorn's 5 s of graceful shutdown run out are cancelled: each gets a JSON
    503 (not a 500 with a traceback in the log), and the server leaves with one line and 143."""
    import concurrent.futures
    import http.client
    import json

    from helpers import http_request, multipart_body, ramp_png

    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "maskingnet", "serve", "-m", str(checkpoint), "--port", "0"]
    with log.open("wb") as handle:
        server = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "http://" not in log.read_text() and time.monotonic() < deadline and server.poll() is None:
            time.sleep(0.1)
        port = int(log.read_text().split("http://", 1)[1].split()[0].rsplit(":", 1)[1])
        body, content_type = multipart_body({"file": ramp_png(4000, 4000)})
        headers = {"Content-Type": content_type}

        def cutout() -> tuple[int, bytes]:
            """The answer, or status 0 when the server closed the connection before taking the request."""
            try:
                status, _, answer = http_request(
                    "127.0.0.1", port, "POST", "/v1/cutout?soft_edges=true", body, headers, timeout=120
                )
            except (ConnectionError, http.client.RemoteDisconnected):
                return 0, b""
            return status, answer

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = [pool.submit(cutout) for _ in range(8)]
            time.sleep(2)
            server.send_signal(signal.SIGTERM)
            code = server.wait(timeout=60)
            results = [future.result() for future in answers]
    finally:
        server.kill()
    text = log.read_text()
    assert code == 143 and text.strip().splitlines()[-1] == "serve: terminated"
    assert "Traceback" not in text
    for status, answer in results:
        assert status in (0, 200, 503)
        if status == 503:
            assert json.loads(answer)["detail"] == "the service is shutting down; retry shortly"
