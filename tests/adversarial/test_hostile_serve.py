"""Hostile clients of ``maskingnet serve`` on 127.0.0.1: idle and slow sockets,
a 50 KB PNG of 40 megapixels. Every loop here is bounded; memory is the server's own RSS (``/proc``)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import http_request, multipart_body, png_with_exif_after_pixels, ramp_png
from PIL import Image

from maskingnet.models import create_model, save_model
from maskingnet.serve.batcher import Overloaded, PixelBudget
from maskingnet.serve.guard import json_errors

IDLE = 130  # more than the default 128 connections
WAIT_S = 30  # the longest any bounded loop here waits for the server


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("hostile-serve") / "tiny.safetensors"
    return save_model(create_model("maskingnet", width=0.125), path, meta={"input_size": [64, 48]})


@pytest.fixture(scope="module")
def default_server(start_server, checkpoint):
    """(host, port, pid) of a server with the default limits."""
    process, host, port = start_server(checkpoint)
    return host, port, process.pid


@pytest.fixture(scope="module")
def strict_server(start_server, checkpoint):
    """(host, port, pid) of a server with short deadlines and 8 connections."""
    args = ("--read-timeout", "2", "--request-timeout", "20", "--max-connections", "8")
    process, host, port = start_server(checkpoint, *args)
    return host, port, process.pid


@pytest.fixture(scope="module")
def photo() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.tile(np.arange(160, dtype=np.uint8)[:, None, None], (1, 240, 3))).save(buffer, "JPEG")
    return buffer.getvalue()


def post(server, path: str, data: bytes, timeout: float = 60) -> tuple[int, dict, bytes]:
    body, content_type = multipart_body({"file": data})
    return http_request(*server[:2], "POST", path, body, {"Content-Type": content_type}, timeout=timeout)


def healthz(server, timeout: float = 5) -> int | str:
    """The health check's status, or the name of the error that stood in its way."""
    try:
        return http_request(*server[:2], "GET", "/healthz", timeout=timeout)[0]
    except OSError as error:
        return type(error).__name__


def open_idle(server, count: int) -> list[socket.socket]:
    return [socket.create_connection(server[:2], timeout=WAIT_S) for _ in range(count)]


def closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within ``within_s``; what it sent is ignored."""
    sock.settimeout(within_s)
    deadline = time.monotonic() + within_s
    try:
        while time.monotonic() < deadline:
            if sock.recv(4096) == b"":
                return True
    except TimeoutError:
        return False
    except OSError:
        return True
    return False


def read_answer(sock: socket.socket, within_s: float) -> bytes:
    sock.settimeout(within_s)
    chunks = []
    try:
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    except OSError:
        pass
    return b"".join(chunks)


def json_body(answer: bytes) -> dict:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


# --- item 1: idle and slow connections ------------------------------------------------------------------


def test_130_idle_sockets_do_not_lock_out_the_health_check_or_a_real_request(default_server, photo):
    sockets = open_idle(default_server, IDLE)
    try:
        time.sleep(0.5)
        assert [healthz(default_server) for _ in range(3)] == [200, 200, 200]
        assert post(default_server, "/v1/mask", photo)[0] == 200
    finally:
        for sock in sockets:
            sock.close()


def test_130_idle_sockets_and_50_concurrent_requests_get_200_or_json_503_and_health_answers(
    default_server, photo
):
    sockets = open_idle(default_server, IDLE)
    health: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            health.append(healthz(default_server, timeout=10))
            time.sleep(0.2)

    def one(_: int) -> tuple[int, bytes]:
        status, headers, body = post(default_server, "/v1/mask", photo)
        return status, body if status != 200 else b""

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
            answers = list(pool.map(one, range(50)))
    finally:
        done.set()
        watcher.join()
        for sock in sockets:
            sock.close()
    assert {status for status, _ in answers} <= {200, 503}
    assert all(json.loads(body)["error"] == "busy" for status, body in answers if status == 503)
    assert health and set(health) == {200}


def test_an_idle_socket_is_closed_after_the_head_deadline(strict_server):
    (sock,) = open_idle(strict_server, 1)
    with sock:
        assert closed_by_server(sock, within_s=WAIT_S)


def test_a_head_sent_a_byte_at_a_time_gets_a_json_408_at_the_deadline(strict_server):
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    started = time.monotonic()
    with socket.create_connection(strict_server[:2], timeout=WAIT_S) as sock:
        try:
            for byte in head:
                sock.sendall(bytes([byte]))
                time.sleep(0.25)
                if time.monotonic() - started > WAIT_S:
                    break
        except OSError:
            pass  # the server closed while we were still trickling
        answer = read_answer(sock, within_s=5)
    assert answer.startswith(b"HTTP/1.1 408")
    assert json_body(answer)["error"] == "timeout"


def stalled_upload_head(host: str) -> bytes:
    """The head of an upload that announces 100 kB (whose body will never all come)."""
    return (
        f"POST /v1/mask HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/jpeg\r\n"
        "Content-Length: 100000\r\n\r\n"
    ).encode()


def test_a_body_that_stalls_gets_a_json_408(strict_server):
    with socket.create_connection(strict_server[:2], timeout=WAIT_S) as sock:
        sock.sendall(stalled_upload_head(strict_server[0]) + b"\xff\xd8" + b"\0" * 1000)
        answer = read_answer(sock, within_s=WAIT_S)
    assert answer.startswith(b"HTTP/1.1 408")
    assert json_body(answer)["error"] == "timeout"


def test_when_every_connection_is_busy_a_newcomer_gets_json_503_and_health_still_answers(strict_server):
    busy = open_idle(strict_server, 8)
    try:
        for sock in busy:  # a request under way on each, its body stalled
            sock.sendall(stalled_upload_head(strict_server[0]) + b"\xff\xd8")
        time.sleep(0.3)
        status, _, body = post(strict_server, "/v1/mask", b"\xff\xd8", timeout=WAIT_S)
        assert (status, json.loads(body)["error"]) == (503, "busy")
        assert healthz(strict_server) == 200
    finally:
        for sock in busy:
            sock.close()


# --- item 2: a tiny file of many pixels ---------------------------------------------------------------


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def test_the_issues_50_kb_40_megapixel_png_with_soft_edges_is_refused_and_costs_no_memory(default_server):
    pid = default_server[2]
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # restart the server's peak RSS from here
    except OSError:
        pytest.skip("cannot reset the server's peak RSS")
    before = status_kb(pid, "VmRSS")
    status, _, body = post(default_server, "/v1/cutout?soft_edges=true", ramp_png(6300, 6300), timeout=120)
    grown_mb = (status_kb(pid, "VmHWM") - before) / 1024
    assert (status, json.loads(body)["error"]) == (422, "decompression_bomb")
    assert "16,000,000" in json.loads(body)["detail"]
    assert grown_mb < 100  # before the budget: 200 after 15 s and +3.1 GB


def test_the_model_endpoint_states_the_limits(default_server):
    status, _, body = http_request(*default_server[:2], "GET", "/v1/model")
    limits = json.loads(body)["limits"]
    assert status == 200 and limits["max_pixels"] == 16_000_000
    assert limits["pixel_budget"] == 4 * limits["max_pixels"] and limits["max_connections"] == 128


def test_the_pixel_budget_lets_requests_in_while_they_fit_and_refuses_after_its_wait():
    async def take(budget: PixelBudget, log: list, name: str, pixels: int, hold_s: float) -> None:
        try:
            async with budget.hold(pixels):
                log.append((name, budget.used))
                await asyncio.sleep(hold_s)
        except Overloaded:
            log.append((name, "refused"))

    async def scenario() -> list:
        log: list = []
        short = PixelBudget(100, wait_s=0.2)
        holder = asyncio.create_task(take(short, log, "a", 60, 1.0))
        await asyncio.sleep(0.01)
        await asyncio.gather(take(short, log, "b", 60, 0), take(short, log, "small", 30, 0))
        await holder
        patient = PixelBudget(100, wait_s=WAIT_S)
        holder = asyncio.create_task(take(patient, log, "c", 60, 0.05))
        await asyncio.sleep(0.01)
        await take(patient, log, "d", 60, 0)  # waits for c, then fits
        await holder
        return log

    log = asyncio.run(scenario())
    assert log == [("a", 60), ("small", 90), ("b", "refused"), ("c", 60), ("d", 60)]


def test_a_request_line_h11_cannot_parse_gets_a_json_400(default_server):
    with socket.create_connection(default_server[:2], timeout=WAIT_S) as sock:
        sock.sendall(b"NOT AN HTTP REQUEST\r\n\r\n")
        answer = read_answer(sock, WAIT_S)
    assert answer.startswith(b"HTTP/1.1 400")
    assert json_body(answer)["error"] == "bad_request"


def call_asgi(app) -> tuple[int, dict, bytes]:
    """(status, headers, body) of a GET / through ``app``, exceptions after the answer swallowed."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}
    with contextlib.suppress(Exception):
        asyncio.run(app(scope, receive, send))
    start = next(message for message in sent if message["type"] == "http.response.start")
    body = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


async def raises_before_answering(scope, receive, send) -> None:
    raise RuntimeError("boom")


def test_an_exception_before_the_answer_gets_a_json_500_not_uvicorns_plain_text():
    status, headers, body = call_asgi(json_errors(raises_before_answering))
    assert status == 500
    assert headers[b"content-type"] == b"application/json"
    assert json.loads(body)["error"] == "internal"


def test_starlettes_plain_text_500_and_uvicorns_503_become_json():
    from fastapi import FastAPI
    from uvicorn.protocols.http.flow_control import service_unavailable

    app = FastAPI()

    @app.get("/")
    def broken() -> None:
        raise RuntimeError("boom")

    for inner, expected in ((app, 500), (service_unavailable, 503)):
        status, headers, body = call_asgi(json_errors(inner))
        assert status == expected
        assert headers[b"content-type"] == b"application/json"
        assert json.loads(body)["detail"]


def test_a_served_mask_has_the_cutouts_upright_size_when_exif_follows_the_pixels(start_server, checkpoint):
    # without the edge stage a mask is answered without decoding the photo: its size comes from the header
    process, host, port = start_server(checkpoint, "--no-refine")
    data = png_with_exif_after_pixels((96, 64))
    sizes = {}
    for kind in ("mask", "cutout"):
        status, _, body = post((host, port), f"/v1/{kind}", data)
        assert status == 200
        sizes[kind] = Image.open(io.BytesIO(body)).size
    assert sizes == {"mask": (64, 96), "cutout": (64, 96)}
