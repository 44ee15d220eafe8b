"""One picture path: the same photo with the same options gives the same bytes from ``predict``, ``cutout``,
the Python API and the HTTP service, with hard and with soft edges."""

from __future__ import annotations

import io

import numpy as np
import pytest
from helpers import http_request, make_half_car_checkpoint, multipart_body
from PIL import Image
from typer.testing import CliRunner

from maskingnet import remove
from maskingnet.cli import app
from maskingnet.inference import Predictor
from maskingnet.predict import PredictConfig, predict_files


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_half_car_checkpoint(tmp_path_factory.mktemp("path") / "half.safetensors", input_size=(64, 48))


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A 150x100 JPEG with a car-like blob, so that cut-outs have outlines and soft edges to differ on."""
    yy, xx = np.mgrid[:100, :150]
    pixels = np.stack([xx * 1.7, yy * 2.5, (xx + yy) % 256], axis=-1).astype(np.uint8)
    pixels[((xx - 75) / 50) ** 2 + ((yy - 55) / 30) ** 2 < 1] = (200, 40, 40)
    path = tmp_path_factory.mktemp("photo") / "car.jpg"
    Image.fromarray(pixels).save(path, quality=90)
    return path


def predicted(checkpoint, photo, folder, soft: bool, **options) -> dict[str, bytes]:
    """``predict``'s files for ``photo``, by kind."""
    save = ("mask", "cutout", "white")
    config = PredictConfig(
        checkpoint, [photo], folder, save=save, soft_edges=soft, workers=0, progress=False, **options
    )
    predict_files(config, report=lambda line: None)
    return {kind: next(folder.glob(f"car_{kind}.*")).read_bytes() for kind in save}


def cut_out(checkpoint, photo, out, kind: str, soft: bool) -> bytes:
    arguments = ["cutout", str(photo), "-o", str(out), "--kind", kind, "-m", str(checkpoint)]
    result = CliRunner().invoke(app, arguments + (["--soft-edges"] if soft else []))
    assert result.exit_code == 0, result.output
    return out.read_bytes()


@pytest.mark.parametrize("soft", [False, True])
def test_predict_and_the_cutout_verb_write_the_same_bytes(checkpoint, photo, tmp_path, soft):
    files = predicted(checkpoint, photo, tmp_path / "predict", soft)
    assert cut_out(checkpoint, photo, tmp_path / "m.png", "mask", soft) == files["mask"]
    assert cut_out(checkpoint, photo, tmp_path / "c.png", "cutout", soft) == files["cutout"]
    assert cut_out(checkpoint, photo, tmp_path / "w.jpg", "white", soft) == files["white"]


@pytest.mark.parametrize("soft", [False, True])
def test_the_python_api_gives_predicts_pictures(checkpoint, photo, tmp_path, soft):
    files = predicted(checkpoint, photo, tmp_path / "predict", soft)
    session = Predictor(checkpoint)
    assert remove(photo.read_bytes(), session=session, soft_edges=soft) == files["cutout"]
    cutout = session.cutout(photo, soft_edges=soft)
    assert np.array_equal(np.asarray(cutout), np.asarray(Image.open(io.BytesIO(files["cutout"]))))


def test_soft_edges_change_the_cutout_and_leave_the_mask_hard(checkpoint, photo, tmp_path):
    hard = predicted(checkpoint, photo, tmp_path / "hard", False)
    soft = predicted(checkpoint, photo, tmp_path / "soft", True)
    assert hard["mask"] == soft["mask"]
    assert hard["cutout"] != soft["cutout"]
    assert set(np.unique(np.asarray(Image.open(io.BytesIO(soft["mask"]))))) <= {0, 255}


@pytest.fixture(scope="module")
def server(checkpoint, start_server):
    _, host, port = start_server(checkpoint)
    return host, port


def served(server, path: str, photo) -> bytes:
    body, content_type = multipart_body({"file": photo.read_bytes()})
    status, _, answer = http_request(*server, "POST", path, body, {"Content-Type": content_type})
    assert status == 200, answer[:200]
    return answer


@pytest.mark.parametrize("soft", [False, True])
def test_the_http_service_answers_predicts_bytes(checkpoint, photo, tmp_path, server, soft):
    files = predicted(checkpoint, photo, tmp_path / "predict", soft)
    flag = "true" if soft else "false"
    assert served(server, f"/v1/mask?soft_edges={flag}", photo) == files["mask"]
    assert served(server, f"/v1/cutout?soft_edges={flag}", photo) == files["cutout"]
    on_white = predicted(checkpoint, photo, tmp_path / "png", soft, fmt="png")["white"]
    assert served(server, f"/v1/cutout?soft_edges={flag}&background=white", photo) == on_white
