"""Careless-operator cases: two runs on one output folder, EXIF orientation after
the pixels, file modes of saved checkpoints, Ctrl-C."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import make_half_car_checkpoint, png_with_exif_after_pixels
from PIL import Image

from maskingnet.data.io import image_size, read_image
from maskingnet.inference import ModelSettings
from maskingnet.predict import PredictConfig, predict_files, remove_stale_temps


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


def test_the_size_from_the_header_follows_exif_stored_after_the_pixels(tmp_path):
    path = tmp_path / "late_exif.png"
    path.write_bytes(png_with_exif_after_pixels((480, 320)))
    decoded = read_image(path)
    assert decoded.size == (320, 480)
    assert image_size(path) == decoded.size
    assert image_size(path.read_bytes()) == decoded.size


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_half_car_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def test_a_mask_only_run_and_a_cutout_run_agree_on_the_upright_size(checkpoint, tmp_path):
    # without the edge stage a mask-only run decodes no photo: its size comes from the header alone
    photo = tmp_path / "in" / "late_exif.png"
    photo.parent.mkdir()
    photo.write_bytes(png_with_exif_after_pixels((480, 320)))
    sizes = {}
    for save in ("mask", "cutout"):
        out = tmp_path / save
        config = PredictConfig(
            ModelSettings(checkpoint, refine=False, precision="fp32"),
            [photo.parent],
            out,
            save=(save,),
            workers=0,
            progress=False,
        )
        assert predict_files(config, report=lambda line: None).done == 1
        (written,) = out.glob(f"*_{save}.png")  # beside manifest.csv
        sizes[save] = Image.open(written).size
    assert sizes == {"mask": (320, 480), "cutout": (320, 480)}


def test_a_saved_checkpoint_gets_the_umask_mode_like_every_other_output(tmp_path):
    old = os.umask(0o022)
    try:
        path = make_half_car_checkpoint(tmp_path / "model.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def many_photos(folder: Path, count: int = 400) -> Path:
    """``count`` names for one 640x480 photo (hard links): enough work to interrupt."""
    folder.mkdir()
    Image.new("RGB", (640, 480), (90, 120, 150)).save(folder / "car000.png")
    for index in range(1, count):
        os.link(folder / "car000.png", folder / f"car{index:03d}.png")
    return folder


def interrupt(args: list[str], started) -> tuple[int, str]:
    """(exit code, stderr) of ``maskingnet ARGS`` sent Ctrl-C, as a terminal sends it to the run and its
    workers, once ``started()`` is true; bounded: it must end within 30 s of the signal."""
    run = subprocess.Popen(
        [sys.executable, "-m", "maskingnet", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and run.poll() is None and not started():
            time.sleep(0.05)
        assert run.poll() is None, "the run ended before it could be interrupted"
        os.killpg(run.pid, signal.SIGINT)
        _, stderr = run.communicate(timeout=30)
    finally:
        run.kill()
    return run.returncode, stderr


def test_ctrl_c_during_predict_exits_130_with_one_line_and_no_worker_tracebacks(checkpoint, tmp_path):
    photos = many_photos(tmp_path / "in")
    out = tmp_path / "out"
    args = ["predict", str(photos), "--out", str(out), "--save", "mask", "--workers", "2", "--no-progress"]
    code, stderr = interrupt([*args, "--model", str(checkpoint)], lambda: any(out.glob("*.png")))
    assert code == 130
    assert stderr.strip().splitlines()[-1] == "predict: interrupted; run the same command again to resume"
    assert "Traceback" not in stderr
    assert len(list(out.glob("*.png"))) < 400


def test_ctrl_c_during_submit_exits_130_with_one_line(checkpoint, tmp_path):
    photos = many_photos(tmp_path / "test")
    out = tmp_path / "out"
    out.mkdir()
    args = ["submit", str(photos), "--out", str(out / "sub.csv"), "--flush-every", "8", "--no-progress"]
    code, stderr = interrupt([*args, "--model", str(checkpoint)], lambda: any(out.iterdir()))
    assert code == 130
    assert stderr.strip().splitlines()[-1] == "submit: interrupted; run the same command again to resume"
    assert "Traceback" not in stderr
