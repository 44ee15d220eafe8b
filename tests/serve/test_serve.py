"""The HTTP service, tested against a real ``maskingnet serve`` process on 127.0.0.1 over real sockets."""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import json
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import http_request, multipart_body, png_claiming_size
from PIL import Image

from maskingnet.models import create_model, save_model
from maskingnet.serve.batcher import MicroBatcher, Overloaded
from maskingnet.serve.uploads import status_for_bad_image

INPUT_SIZE = [64, 48]
MAX_UPLOAD_MB = 1


def make_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    return save_model(create_model("maskingnet", width=0.125), path, meta={"input_size": INPUT_SIZE})


@pytest.fixture(scope="module")
def server(tmp_path_factory, start_server):
    """A live server for the module: (host, port, pid, checkpoint)."""
    checkpoint = make_checkpoint(tmp_path_factory.mktemp("serve") / "tiny.safetensors")
    process, host, port = start_server(
        checkpoint,
        "--max-upload-mb",
        str(MAX_UPLOAD_MB),
        "--max-wait-ms",
        "20",
        "--max-batch",
        "16",
        "--max-pixels",
        "20000000",
    )
    return host, port, process.pid, checkpoint


@pytest.fixture(scope="module")
def photos(real_sample) -> list[bytes]:
    """Four real Carvana photos (different cars), shrunk to 240x160 JPEGs to keep the requests light."""
    out = []
    for path in sorted((real_sample / "train").glob("*_03.jpg"))[:4]:
        with Image.open(path) as image:
            buffer = io.BytesIO()
            image.convert("RGB").resize((240, 160), Image.Resampling.BILINEAR).save(
                buffer, "JPEG", quality=90
            )
            out.append(buffer.getvalue())
    return out


request = http_request


def post(server, path: str, fields: dict[str, bytes | str]) -> tuple[int, dict[str, str], bytes]:
    host, port = server[:2]
    body, content_type = multipart_body(fields)
    return request(host, port, "POST", path, body, {"Content-Type": content_type})


def post_image(server, path: str, data: bytes) -> Image.Image:
    status, headers, body = post(server, path, {"file": data})
    assert status == 200, body[:300]
    assert headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(body))


def get_json(server, path: str) -> dict:
    status, _, body = request(*server[:2], "GET", path)
    assert status == 200
    return json.loads(body)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


# --- the live server -------------------------------------------------------------------------------------


def test_healthz_reports_ok(server):
    assert get_json(server, "/healthz")["status"] == "ok"


def test_model_endpoint_names_the_model_its_parameters_and_size(server):
    info = get_json(server, "/v1/model")
    expected_params = sum(p.numel() for p in create_model("maskingnet", width=0.125).parameters())
    assert (info["name"], info["params"], info["size"]) == ("maskingnet", expected_params, INPUT_SIZE)


def test_mask_is_a_binary_png_at_the_photo_size(server, photos):
    mask = post_image(server, "/v1/mask", photos[0])
    assert (mask.mode, mask.size) == ("L", (240, 160))
    assert set(np.unique(np.asarray(mask))) <= {0, 255}


def test_mask_agrees_with_the_library_predictor(server, photos, tmp_path):
    from maskingnet.predict import Predictor

    mask = np.asarray(post_image(server, "/v1/mask", photos[1])) > 0
    (tmp_path / "car.jpg").write_bytes(photos[1])
    expected = Predictor(server[3]).mask(tmp_path / "car.jpg")
    assert (mask != expected).mean() < 1e-3


def test_cutout_is_transparent_rgba_whose_alpha_is_the_mask(server, photos):
    cutout = post_image(server, "/v1/cutout", photos[0])
    mask = post_image(server, "/v1/mask", photos[0])
    assert (cutout.mode, cutout.size) == ("RGBA", (240, 160))
    assert np.array_equal(np.asarray(cutout)[..., 3], np.asarray(mask))


def test_cutout_on_a_background_colour_is_rgb_with_that_colour_outside_the_car(server, photos):
    status, _, body = post(server, "/v1/cutout", {"file": photos[0], "background": "#ff0000"})
    assert status == 200
    image = np.asarray(Image.open(io.BytesIO(body)))
    outside = np.asarray(post_image(server, "/v1/mask", photos[0])) == 0
    assert image.ndim == 3 and image.shape[2] == 3
    assert outside.any() and (image[outside] == [255, 0, 0]).all()


def test_soft_edges_give_intermediate_alpha_only_near_the_outline(server, photos):
    status, _, body = post(server, "/v1/cutout?soft_edges=true", {"file": photos[2]})
    alpha = np.asarray(Image.open(io.BytesIO(body)))[..., 3]
    assert status == 200
    assert ((alpha > 0) & (alpha < 255)).any()


def test_raw_image_body_works_like_a_form_upload(server, photos):
    status, _, body = request(*server[:2], "POST", "/v1/mask", photos[0], {"Content-Type": "image/jpeg"})
    assert status == 200
    assert np.array_equal(
        np.asarray(Image.open(io.BytesIO(body))), np.asarray(post_image(server, "/v1/mask", photos[0]))
    )


def test_bad_option_is_400_naming_it(server, photos):
    status, _, body = post(server, "/v1/cutout", {"file": photos[0], "background": "no-such-colour"})
    assert status == 400 and "background" in json.loads(body)["detail"]


def test_the_format_option_answers_webp(server, photos):
    status, headers, body = post(server, "/v1/cutout?format=webp", {"file": photos[0]})
    image = Image.open(io.BytesIO(body))
    assert (status, headers["content-type"], image.format, image.mode) == (200, "image/webp", "WEBP", "RGBA")


def test_framing_options_in_the_form_give_the_canvas(server, photos):
    fields = {"file": photos[0], "canvas": "64x48", "format": "jpg", "quality": "80"}
    status, headers, body = post(server, "/v1/cutout", fields)
    image = Image.open(io.BytesIO(body))
    assert (status, headers["content-type"]) == (200, "image/jpeg")
    assert (image.format, image.size) == ("JPEG", (64, 48))


def test_an_unknown_option_is_400_naming_it(server, photos):
    status, _, body = post(server, "/v1/cutout?bogus=1", {"file": photos[0]})
    answer = json.loads(body)
    assert (status, answer["error"]) == (400, "unknown_option") and "'bogus'" in answer["detail"]


def test_missing_file_field_is_400(server, photos):
    status, _, body = post(server, "/v1/mask", {"photo": photos[0]})
    assert (status, json.loads(body)["error"]) == (400, "missing_file")


def test_not_an_image_is_415(server):
    status, _, body = post(server, "/v1/mask", {"file": b"this is a text file, not a photo\n" * 10})
    assert (status, json.loads(body)["error"]) == (415, "not_an_image")


def test_decompression_bomb_is_422(server):
    status, _, body = post(server, "/v1/mask", {"file": png_claiming_size(60_000, 60_000)})
    assert (status, json.loads(body)["error"]) == (422, "decompression_bomb")


def test_truncated_photo_is_422(server, photos):
    status, _, body = post(server, "/v1/mask", {"file": photos[0][: len(photos[0]) // 3]})
    assert (status, json.loads(body)["error"]) == (422, "corrupt_image")


def test_declared_oversize_upload_is_413_before_the_body_is_read(server):
    host, port = server[:2]
    too_big = MAX_UPLOAD_MB * 1024 * 1024 + 1
    head = (
        f"POST /v1/mask HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/jpeg\r\n"
        f"Content-Length: {too_big}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((host, port), timeout=60) as sock:
        sock.sendall(head.encode())
        reply = sock.makefile("rb").read()
    assert reply.startswith(b"HTTP/1.1 413")
    assert b"too_large" in reply


def test_streamed_upload_is_cut_off_with_413_once_past_the_limit(server):
    """No Content-Length (chunked): the server counts bytes as they arrive and stops at the limit."""
    host, port = server[:2]
    limit = MAX_UPLOAD_MB * 1024 * 1024
    head = (
        f"POST /v1/mask HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/jpeg\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    chunk = b"\xff" * 65536
    with socket.create_connection((host, port), timeout=60) as sock:
        sock.sendall(head.encode())
        for _ in range(limit // len(chunk) + 1):
            sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
        reply = sock.makefile("rb").read()
    assert reply.startswith(b"HTTP/1.1 413")


def test_fifty_concurrent_requests_all_succeed_and_share_model_calls(server, photos):
    before = get_json(server, "/v1/model")["stats"]

    def one(index: int) -> tuple[int, int]:
        status, headers, _ = post(server, "/v1/mask", {"file": photos[index % len(photos)]})
        return status, int(headers.get("x-batch-size", 0))

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(one, range(50)))
    after = get_json(server, "/v1/model")["stats"]
    assert [status for status, _ in answers] == [200] * 50
    assert after["requests"] - before["requests"] == 50
    assert after["model_calls"] - before["model_calls"] < 50
    assert max(size for _, size in answers) >= 2


def test_memory_does_not_grow_across_200_requests(server, photos):
    pid = server[2]

    def one(index: int) -> int:
        path = "/v1/mask" if index % 2 else "/v1/cutout"
        return post(server, path, {"file": photos[index % len(photos)]})[0]

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(one, range(40))) == {200}
        warm = rss_mb(pid)
        assert set(pool.map(one, range(200))) == {200}
    assert rss_mb(pid) - warm < 50


def test_page_is_served_at_the_root(server):
    status, headers, body = request(*server[:2], "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'type="file"' in body and b"v1/cutout" in body


# --- the micro-batcher on its own ------------------------------------------------------------------------


def run(coroutine):
    return asyncio.run(coroutine)


def test_batcher_answers_simultaneous_requests_with_one_call():
    calls = []

    def infer(items):
        calls.append(list(items))
        return [item * 10 for item in items]

    async def scenario():
        batcher = MicroBatcher(infer, max_batch=8, max_wait_s=0.05)
        batcher.start()
        answers = await asyncio.gather(*(batcher.submit(i) for i in range(5)))
        await batcher.stop()
        return answers

    assert run(scenario()) == [(i * 10, 5) for i in range(5)]
    assert calls == [[0, 1, 2, 3, 4]]


def test_batcher_never_exceeds_max_batch():
    sizes = []

    def infer(items):
        sizes.append(len(items))
        return items

    async def scenario():
        batcher = MicroBatcher(infer, max_batch=3, max_wait_s=0.05)
        batcher.start()
        await asyncio.gather(*(batcher.submit(i) for i in range(7)))
        await batcher.stop()

    run(scenario())
    assert max(sizes) <= 3 and sum(sizes) == 7


def test_batcher_refuses_when_its_queue_is_full():
    async def scenario():
        batcher = MicroBatcher(lambda items: items, queue_size=2)  # not started: nothing drains the queue
        tasks = [asyncio.ensure_future(batcher.submit(i)) for i in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):
            await batcher.submit(99)
        for task in tasks:
            task.cancel()
        await batcher.stop()
        return batcher.stats.rejected_overload

    assert run(scenario()) == 1


def test_batcher_passes_a_model_error_to_the_waiting_requests_and_keeps_going():
    def infer(items):
        if items == ["bad"]:
            raise RuntimeError("model failed")
        return items

    async def scenario():
        batcher = MicroBatcher(infer, max_wait_s=0.0)
        batcher.start()
        with pytest.raises(RuntimeError, match="model failed"):
            await batcher.submit("bad")
        answer = await batcher.submit("good")
        await batcher.stop()
        return answer

    assert run(scenario()) == ("good", 1)


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        ("decompression bomb (9x9 = 81 pixels, limit 10)", 422),
        ("not an image (unrecognised content)", 415),
        ("truncated image (image file is truncated)", 422),
        ("empty file (0 bytes)", 400),
    ],
)
def test_bad_image_reasons_map_to_statuses(reason, status):
    assert status_for_bad_image(reason)[0] == status


def test_without_the_serve_extra_the_message_says_how_to_install_it(monkeypatch, tmp_path):
    from maskingnet.serve import ServeConfig, create_app

    monkeypatch.setitem(sys.modules, "fastapi", None)
    with pytest.raises(RuntimeError, match=r"pip install 'maskingnet\[serve\]'"):
        create_app(ServeConfig(model=tmp_path / "never-loaded.safetensors"))


# --- access: the Host allow-list, the API key, CORS, the access log --------------------------------------

API_KEY = "s3cret-key"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, start_server, server):
    """A second live server with every access option: (host, port, access log path)."""
    log = tmp_path_factory.mktemp("access") / "access.log"
    _, host, port = start_server(
        server[3],
        "--allowed-host",
        "cars.example",
        "--api-key",
        API_KEY,
        "--cors-origin",
        "https://shop.example",
        "--cors-origin",
        "https://other.example",
        "--access-log",
        str(log),
    )
    return host, port, log


def keyed(extra: dict | None = None) -> dict:
    return {"Authorization": f"Bearer {API_KEY}", **(extra or {})}


def test_a_foreign_host_header_is_refused_with_a_json_421(server):
    status, _, body = request(*server[:2], "GET", "/v1/model", headers={"Host": "rebound.attacker.example"})
    assert (status, json.loads(body)["error"]) == (421, "bad_host")


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]"])
def test_local_host_names_are_served_by_default(server, host):
    port = server[1]
    status, _, _ = request(server[0], port, "GET", "/v1/model", headers={"Host": f"{host}:{port}"})
    assert status == 200


def test_an_allowed_host_option_adds_a_host(guarded):
    status, _, _ = request(*guarded[:2], "GET", "/v1/model", headers=keyed({"Host": "cars.example"}))
    assert status == 200


def test_without_the_api_key_a_request_is_a_json_401(guarded, photos):
    body, content_type = multipart_body({"file": photos[0]})
    status, headers, answer = request(*guarded[:2], "POST", "/v1/mask", body, {"Content-Type": content_type})
    assert (status, json.loads(answer)["error"]) == (401, "unauthorized")
    assert headers["www-authenticate"] == "Bearer"


def test_a_wrong_api_key_is_a_401(guarded):
    status, _, _ = request(*guarded[:2], "GET", "/v1/model", headers={"X-API-Key": API_KEY + "x"})
    assert status == 401


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {API_KEY}"}, {"X-API-Key": API_KEY}])
def test_the_api_key_is_accepted_as_bearer_or_x_api_key(guarded, headers):
    status, _, _ = request(*guarded[:2], "GET", "/v1/model", headers=headers)
    assert status == 200


def test_the_health_endpoint_needs_no_api_key(guarded):
    status, _, body = request(*guarded[:2], "GET", "/healthz")
    assert (status, json.loads(body)["status"]) == (200, "ok")


def test_a_listed_cors_origin_may_read_answers(guarded):
    headers = keyed({"Origin": "https://other.example"})
    _, answer_headers, _ = request(*guarded[:2], "GET", "/v1/model", headers=headers)
    assert answer_headers["access-control-allow-origin"] == "https://other.example"


def test_an_unlisted_origin_gets_no_cors_header(guarded):
    headers = keyed({"Origin": "https://x.example"})
    _, answer_headers, _ = request(*guarded[:2], "GET", "/v1/model", headers=headers)
    assert "access-control-allow-origin" not in answer_headers


def test_a_cors_preflight_is_answered_without_the_key(guarded):
    headers = {
        "Origin": "https://shop.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    status, answer_headers, _ = request(*guarded[:2], "OPTIONS", "/v1/cutout", headers=headers)
    assert status == 200
    assert answer_headers["access-control-allow-origin"] == "https://shop.example"


def test_the_access_log_has_one_line_per_request_and_never_the_key(guarded):
    host, port, log = guarded
    request(host, port, "GET", "/v1/model?probe=1", headers=keyed())
    request(host, port, "GET", "/v1/model?probe=2")
    deadline = time.monotonic() + 10  # each line is written just after its answer went out
    while time.monotonic() < deadline and log.read_text().count("?probe=") < 2:
        time.sleep(0.05)
    lines = [line.split('"') for line in log.read_text().splitlines() if "?probe=" in line]
    assert [(fields[1], fields[2].split()[0]) for fields in lines] == [
        ("GET /v1/model?probe=1 HTTP/1.1", "200"),
        ("GET /v1/model?probe=2 HTTP/1.1", "401"),
    ]
    assert API_KEY not in log.read_text()


def test_the_api_key_can_come_from_the_environment(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from maskingnet import serve as serve_module
    from maskingnet.cli import app

    started = []
    monkeypatch.setattr(serve_module, "serve", started.append)
    model = make_checkpoint(tmp_path / "tiny.safetensors")
    result = CliRunner().invoke(app, ["serve", "-m", str(model)], env={"MASKINGNET_API_KEY": API_KEY})
    assert result.exit_code == 0, result.output
    assert started[0].api_key == API_KEY
