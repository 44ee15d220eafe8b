"""What hostile inputs cost: a tiny huge-pixel PNG sent to ``maskingnet serve`` and given to ``predict``,
and idle sockets held open against the server.

Prints one line per case: the HTTP status (serve) or exit code (predict), wall seconds and memory: for the
server its RSS growth and its peak RSS (``VmHWM``, reset first) above its RSS before the requests, for
``predict`` the peak RSS of the whole command (``/usr/bin/time -v``-style, from ``wait4``). The photos are
real, fully decodable grey PNGs of a few tens of kilobytes (``tests/helpers.py:ramp_png``); the model is a
tiny random MaskingNet set to call about half of a photo "car" (a long outline), unless ``--model`` names
another. Run (nice it on a shared machine)::

    python benchmarks/bench_hostile.py [--serve-side 6300] [--predict-side 14000] [--idle 130]
        [--concurrent 1] [--scan-bombs 3] [--server-args '--max-pixels 40000000']

``--scan-bombs N`` times a normal photo's ``/v1/mask`` alone and again while N progressive JPEGs of 16 MP
whose 14-byte scan repeats 70,000 times (1 MB each) are in flight.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from helpers import make_half_car_checkpoint, progressive_scan_bomb, ramp_png  # noqa: E402


def proc_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def start_server(model: str, extra: list[str], log: Path) -> tuple[subprocess.Popen, int]:
    command = [sys.executable, "-m", "maskingnet", "serve", "-m", model, "--port", "0", *extra]
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        text = log.read_text(errors="replace")
        if "http://" in text:
            port = int(text.split("http://", 1)[1].split()[0].rsplit(":", 1)[1])
            if get(port, "/healthz", 5)[0] == 200:
                return process, port
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server did not start:\n{log.read_text(errors='replace')}")


def get(port: int, path: str, timeout: float) -> tuple[int | str, float]:
    started = time.perf_counter()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        connection.request("GET", path)
        status: int | str = connection.getresponse().status
        connection.close()
    except OSError as error:
        status = type(error).__name__
    return status, time.perf_counter() - started


def post_file(port: int, path: str, data: bytes, timeout: float = 600) -> tuple[int | str, bytes]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        connection.request("POST", path, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        response = connection.getresponse()
        return response.status, response.read()[:200]
    except OSError as error:
        return type(error).__name__, b""


def serve_case(port: int, pid: int, side: int, concurrent: int) -> None:
    data = ramp_png(side, side)
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # the server's peak RSS restarts from its RSS
    rss = proc_kb(pid, "VmRSS")
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrent) as pool:
        sends = [pool.submit(post_file, port, "/v1/cutout?soft_edges=true", data) for _ in range(concurrent)]
        answers = [send.result() for send in sends]
    seconds = time.perf_counter() - started
    grown = (proc_kb(pid, "VmRSS") - rss) / 1024
    peak = (proc_kb(pid, "VmHWM") - rss) / 1024
    statuses = sorted({str(status) for status, _ in answers})
    refused = [body.decode(errors="replace") for status, body in answers if status != 200]
    print(
        f"serve  {concurrent} x {side}x{side} PNG ({len(data) / 1024:.0f} KB) soft_edges cutout: "
        f"{'/'.join(statuses)} in {seconds:.1f} s, RSS +{grown:.0f} MB, peak RSS +{peak:.0f} MB  "
        f"[{(refused or ['PNG'])[0][:120]}]"
    )


def scan_bomb_case(port: int, bombs: int) -> None:
    photo = ramp_png(1918, 1280)
    post_file(port, "/v1/mask", photo)
    started = time.perf_counter()
    alone = post_file(port, "/v1/mask", photo)[0]
    alone_s = time.perf_counter() - started
    bomb = progressive_scan_bomb((4000, 4000), 70_000)
    with ThreadPoolExecutor(bombs + 1) as pool:
        started = time.perf_counter()
        sends = [pool.submit(post_file, port, "/v1/mask", bomb) for _ in range(bombs)]
        time.sleep(0.05)
        beside = post_file(port, "/v1/mask", photo)[0]
        beside_s = time.perf_counter() - started
        answers = [send.result() for send in sends]
        bombs_s = time.perf_counter() - started
    statuses = "/".join(sorted({str(status) for status, _ in answers}))
    print(
        f"serve  1918x1280 PNG /v1/mask alone: {alone} in {alone_s:.2f} s; beside {bombs} scan bombs "
        f"({len(bomb) / 1024:.0f} KB, 4000x4000, {70_010} scans): {beside} in {beside_s:.2f} s; "
        f"bombs {statuses} after {bombs_s:.2f} s [{answers[0][1].decode(errors='replace')[:120]}]"
    )


def idle_case(port: int, idle: int) -> None:
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(idle)]
    time.sleep(1)
    answers = []
    for _ in range(3):
        answers.append(get(port, "/healthz", 10))
        time.sleep(2)
    still_open = sum(1 for sock in sockets if _open(sock))
    for sock in sockets:
        sock.close()
    shown = ", ".join(f"{status} in {seconds:.3f} s" for status, seconds in answers)
    print(f"serve  {idle} idle sockets: /healthz {shown}; {still_open} of them still open after ~7 s")


def _open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def predict_case(model: str, side: int, work: Path) -> None:
    image = work / f"ramp{side}.png"
    image.write_bytes(ramp_png(side, side))
    command = [
        sys.executable,
        "-m",
        "maskingnet",
        "predict",
        "-m",
        model,
        str(image),
        "--out",
        str(work / f"out{side}"),
        "--save",
        "mask,cutout",
        "--soft-edges",
        "--no-progress",
        "--workers",
        "0",
    ]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    tail = process.stderr.read().decode(errors="replace").strip().splitlines()[-1:] if process.stderr else []
    print(
        f"predict {side}x{side} PNG ({image.stat().st_size / 1024:.0f} KB) mask+cutout soft edges: exit "
        f"{os.waitstatus_to_exitcode(status)} in {seconds:.1f} s, peak RSS {usage.ru_maxrss / 1024:.0f} MB "
        f"[{' '.join(tail)[:120]}]"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint (default: a tiny half-car MaskingNet)")
    parser.add_argument("--serve-side", type=int, default=6300, help="PNG side sent to serve (0: skip)")
    parser.add_argument("--predict-side", type=int, default=14000, help="PNG side predicted (0: skip)")
    parser.add_argument("--idle", type=int, default=130, help="idle sockets held against serve (0: skip)")
    parser.add_argument("--concurrent", type=int, default=1, help="copies of the PNG sent to serve at once")
    parser.add_argument("--scan-bombs", type=int, default=3, help="scan bombs beside a photo (0: skip)")
    parser.add_argument("--server-args", default="", help="extra 'maskingnet serve' options")
    args = parser.parse_args()
    print(
        f"# {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = args.model or str(make_half_car_checkpoint(work / "half.safetensors"))
        if args.serve_side or args.idle or args.scan_bombs:
            process, port = start_server(model, shlex.split(args.server_args), work / "serve.log")
            try:
                if args.idle:
                    idle_case(port, args.idle)
                if args.scan_bombs:
                    scan_bomb_case(port, args.scan_bombs)
                if args.serve_side:
                    serve_case(port, process.pid, args.serve_side, args.concurrent)
            finally:
                process.terminate()
                process.wait(30)
        if args.predict_side:
            predict_case(model, args.predict_side, work)


if __name__ == "__main__":
    main()
