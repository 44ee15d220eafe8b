"""CPU bombs: progressive JPEGs whose few-byte scans repeat thousands of times. Decoding costs a pass over
the photo per scan, so the scans are counted from the markers and refused past a bound, before decoding,
in every reader (``predict``, ``serve``)."""

from __future__ import annotations

import concurrent.futures
import io
import json
import time

import numpy as np
import pytest
import torch
from helpers import http_request, multipart_body, progressive_scan_bomb
from PIL import Image

from maskingnet.data.io import BadInputError, image_size, read_image
from maskingnet.data.jpeg_scans import DEFAULT_MAX_SCANS, count_scans
from maskingnet.models import create_model, save_model

BOMB_SIDE = 2000  # 4 MP: 70,000 repeats cost about 9 s of decoding on a 2-core EPYC when not refused


def jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def test_scans_are_counted_as_the_encoder_wrote_them():
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    assert count_scans(jpeg(photo)) == 1
    assert count_scans(jpeg(photo, progressive=True)) == 10
    assert count_scans(progressive_scan_bomb((64, 48), 500)) == 510


def test_markers_inside_a_segment_are_not_scans():
    """A comment (like an EXIF thumbnail) may hold another JPEG's markers: they are skipped with it."""
    inner = jpeg(Image.new("RGB", (16, 16)), progressive=True) * 20
    assert count_scans(jpeg(Image.new("RGB", (32, 32)), comment=inner[:60_000])) == 1


def test_a_scan_bomb_is_refused_in_one_line_before_decoding(tmp_path):
    path = tmp_path / "bomb.jpg"
    path.write_bytes(progressive_scan_bomb((BOMB_SIDE, BOMB_SIDE), 20_000))
    started = time.perf_counter()
    with pytest.raises(BadInputError) as refused:
        read_image(path, target_size=(64, 64))
    assert time.perf_counter() - started < 1.0  # the count is a regex pass; decoding it took seconds
    message = str(refused.value)
    assert message.startswith(f"{path}: decompression bomb") and f"{DEFAULT_MAX_SCANS} scans" in message
    assert "\n" not in message
    with pytest.raises(BadInputError, match="scans"):
        image_size(path.read_bytes())


def test_a_progressive_photo_at_the_bound_is_read():
    bomb = progressive_scan_bomb((64, 48), DEFAULT_MAX_SCANS - 10)
    assert read_image(bomb).size == (64, 48)


@pytest.fixture(scope="module")
def server(start_server, tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("scan-bombs") / "tiny.safetensors"
    save_model(create_model("maskingnet", width=0.125), path, meta={"input_size": [64, 48]})
    _, host, port = start_server(path)
    return host, port


def post(server, data: bytes, timeout: float) -> tuple[int, bytes]:
    body, content_type = multipart_body({"file": data})
    status, _, answer = http_request(
        *server, "POST", "/v1/mask", body, {"Content-Type": content_type}, timeout
    )
    return status, answer


def test_a_normal_photo_is_answered_while_three_scan_bombs_are_in_flight(server):
    photo = jpeg(Image.new("RGB", (320, 240), (90, 90, 90)))
    assert post(server, photo, 30)[0] == 200  # warm
    bomb = progressive_scan_bomb((BOMB_SIDE, BOMB_SIDE), 70_000)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        bombs = [pool.submit(post, server, bomb, 60) for _ in range(3)]
        time.sleep(0.2)
        started = time.perf_counter()
        status, _ = post(server, photo, 30)
        seconds = time.perf_counter() - started
        answers = [future.result() for future in bombs]
    assert status == 200
    # unbounded, each bomb held a decoding thread for about 9 s (both threads of a 2-core machine)
    assert seconds < 5, f"a normal photo took {seconds:.1f} s beside three scan bombs"
    for code, answer in answers:
        assert code == 422 and b"decompression_bomb" in answer and b"scans" in answer


def test_the_scan_bound_is_reported_with_the_other_limits(server):
    status, _, body = http_request(*server, "GET", "/v1/model", timeout=10)
    assert status == 200 and json.loads(body)["limits"]["max_jpeg_scans"] == DEFAULT_MAX_SCANS


def test_the_quick_count_never_misses_a_bomb_and_a_thumbnail_never_counts():
    from maskingnet.data.jpeg_scans import too_many_scans

    assert too_many_scans(progressive_scan_bomb((64, 48), DEFAULT_MAX_SCANS))
    assert not too_many_scans(progressive_scan_bomb((64, 48), DEFAULT_MAX_SCANS - 10))
    # a comment holding many FF DA bytes passes the quick bound but not the walk
    thumbnails = jpeg(Image.new("RGB", (16, 16)), progressive=True) * 20
    assert not too_many_scans(jpeg(Image.new("RGB", (32, 32)), comment=thumbnails[:60_000]))
