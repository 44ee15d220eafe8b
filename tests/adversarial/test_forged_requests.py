"""Requests that try to pass for something else: a path that writes a second access-log line, Host
headers that only start or end like an allowed name, and what ``/v1/model`` tells a client."""

from __future__ import annotations

import json
import socket
import time

import pytest
from helpers import http_request, make_half_car_checkpoint

from maskingnet.serve.access import HostAllowList, access_line
from maskingnet.utils.messages import one_line

FORGED = '1.2.3.4 - - [05/Dec/2026:10:00:00 +0000] "GET /admin HTTP/1.1" 200 0 1ms'


def scope(path: str) -> dict:
    return {"type": "http", "client": ("127.0.0.1", 5000), "method": "GET", "path": path}


def test_a_decoded_newline_or_quote_in_the_path_stays_inside_one_quoted_field():
    line = access_line(scope(f"/x\n{FORGED}"), 404, 10, 0.001)
    assert "\n" not in line and "\r" not in line
    request = line.split('"')[1]  # the quoted request: nothing the client sent may close it
    assert line.count('"') == 2 and request.startswith("GET /x\\n1.2.3.4")


@pytest.mark.parametrize("separator", ["\r", "\u2028", "\u0085", "\x1b[2K"])
def test_other_line_breaks_and_terminal_escapes_are_escaped_too(separator):
    assert separator not in access_line(scope(f"/x{separator}y"), 404, 10, 0.001)
    assert separator not in one_line(f"photo{separator}.jpg: not an image")


@pytest.mark.parametrize("header", ["localhost:80@evil.com", "[::1]evil.com", "localhost evil.com", "::1"])
def test_a_host_header_must_be_exactly_a_name_and_a_port(header):
    assert not HostAllowList("127.0.0.1").allows(header)


@pytest.mark.parametrize("header", ["localhost", "localhost:8000", "[::1]:8000", "[0:0::1]", "127.0.0.1:1"])
def test_the_loopback_names_are_still_allowed(header):
    assert HostAllowList("127.0.0.1").allows(header)


@pytest.fixture(scope="module")
def logged_server(start_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("forged")
    checkpoint = make_half_car_checkpoint(folder / "secret-folder-name" / "tiny.safetensors")
    log = folder / "access.log"
    _, host, port = start_server(checkpoint, "--access-log", str(log))
    return host, port, log


def raw_request(host: str, port: int, head: bytes) -> bytes:
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_a_served_request_cannot_forge_an_access_log_line(logged_server):
    host, port, log = logged_server
    target = "/x%0a" + FORGED.replace(" ", "%20").replace('"', "%22")
    head = f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
    assert raw_request(host, port, head).startswith(b"HTTP/1.1 404")
    deadline = time.monotonic() + 10
    while "/x" not in log.read_text(encoding="utf-8") and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = log.read_text(encoding="utf-8").splitlines()
    assert [line for line in lines if "GET /admin" in line] == [line for line in lines if "GET /x" in line]
    assert len([line for line in lines if "GET /x" in line]) == 1
    assert not any(line.startswith("1.2.3.4") for line in lines)


@pytest.mark.parametrize("header", ["localhost:80@evil.com", "[::1]evil.com"])
def test_the_server_refuses_a_host_that_only_looks_local(logged_server, header):
    host, port, _ = logged_server
    status, _, body = http_request(host, port, "GET", "/v1/model", headers={"Host": header}, timeout=10)
    assert status == 421 and json.loads(body)["error"] == "bad_host"


def test_the_model_summary_names_the_file_but_not_the_server_s_folders(logged_server):
    host, port, _ = logged_server
    status, _, body = http_request(host, port, "GET", "/v1/model", timeout=10)
    assert status == 200
    summary = json.loads(body)
    assert summary["checkpoint"] == "tiny.safetensors"
    assert "secret-folder-name" not in body.decode()
