"""Fixtures shared by the whole suite: the real Carvana sample and a tiny synthetic Carvana set."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_SAMPLE = REPO.parent / "shared" / "data" / "carvana-sample"


SLOW_MODULES = {
    # whole-program runs: training, servers, a browser, wheels, exports, benchmarks, hostile inputs
    "test_train.py",
    "test_train_split.py",
    "test_train_refiner.py",
    "test_evaluate.py",
    "test_ablation.py",
    "test_demo.py",
    "test_bench.py",
    "test_bench_peer.py",
    "test_serve.py",
    "test_web.py",
    "test_wheel.py",
    "test_export.py",
    "test_quantize.py",
    "test_gpu_check.py",
    "test_submit.py",
    "test_synth.py",
    "test_carvana.py",
    "test_cache.py",
}
SLOW_FOLDERS = {"adversarial", "e2e"}
SLOW_TESTS = {"test_predict_takes_a_bundled_name_a_checkpoint_or_an_onnx[onnx]"}  # an ONNX export: ~25 s
SLOW_FIXTURES = {"exported_bundled", "trained_run", "start_server"}  # an export, a training, a server


def pytest_collection_modifyitems(config, items):
    """``slow``: the modules above (and any test marked so); ``make test-fast`` runs the rest, the loop a
    contributor runs on every change. ``make test`` runs everything."""
    for item in items:
        path = Path(str(item.fspath))
        slow_place = path.name in SLOW_MODULES or SLOW_FOLDERS & set(path.parts)
        slow_fixture = SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
        if slow_place or item.name in SLOW_TESTS or slow_fixture:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """The suite's models are tiny: one torch thread runs them fastest, and on a 2-core machine shared with
    other processes two OpenMP threads waiting on each other can make a 20 ms step take seconds."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def real_sample() -> Path:
    """The real Carvana sample beside the checkout (CI always has it)."""
    if not (REAL_SAMPLE / "train").is_dir():
        pytest.skip(f"real Carvana sample not found at {REAL_SAMPLE}")
    return REAL_SAMPLE


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """A tiny synthetic Carvana-format set: 3 train cars x 16 angles, 1 test car, 96x64 pixels."""
    from maskingnet.data.synth import generate

    out = tmp_path_factory.mktemp("synth")
    generate(out, cars=3, test_cars=1, size=(96, 64), seed=0, workers=1)
    return out


@pytest.fixture(scope="session")
def trained_run(synth_dir, tmp_path_factory) -> Path:
    """A finished tiny training run on ``synth_dir`` (maskingnet, width 0.125, 64x64, 2 epochs). Read only."""
    from helpers import train_tiny

    out = tmp_path_factory.mktemp("trained") / "run"
    train_tiny(synth_dir, out)
    return out


@pytest.fixture(scope="session")
def start_server(tmp_path_factory):
    """Start a real ``maskingnet serve CHECKPOINT --port 0 ARGS...`` subprocess on 127.0.0.1.

    Returns a function ``start(checkpoint, *args) -> (process, host, port)``; every server started is
    stopped when the session ends. The server's log is a file (a pipe left unread could block it).
    """
    import subprocess
    import sys
    import time
    import urllib.request

    processes = []

    def healthy(port: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
                return response.status == 200
        except OSError:
            return False

    def start(checkpoint, *args: str, startup_limit_s: float = 180.0):
        log = tmp_path_factory.mktemp("server") / "server.log"
        command = [sys.executable, "-m", "maskingnet", "serve", "-m", str(checkpoint), "--port", "0", *args]
        with log.open("wb") as handle:
            process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
        processes.append(process)
        deadline = time.monotonic() + startup_limit_s
        while time.monotonic() < deadline and process.poll() is None:
            text = log.read_text(errors="replace")
            if "serving" in text and "http://" in text:
                port = int(text.split("http://", 1)[1].split()[0].rsplit(":", 1)[1])
                while time.monotonic() < deadline and not healthy(port):
                    time.sleep(0.1)
                return process, "127.0.0.1", port
            time.sleep(0.2)
        process.kill()
        raise RuntimeError(f"maskingnet serve did not start:\n{log.read_text(errors='replace')}")

    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
