"""``maskingnet predict --watch``: photos that arrive after it started are cut out into the same folder."""

import csv
import threading
import time

import numpy as np
import pytest
from helpers import make_half_car_checkpoint
from PIL import Image

from maskingnet.inference import ModelSettings
from maskingnet.predict import PredictConfig
from maskingnet.predict.watch import watch


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_half_car_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def photo(path, seed):
    pixels = np.random.default_rng(seed).integers(0, 255, (32, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG")


def test_watch_picks_up_a_photo_written_after_it_started(tmp_path, checkpoint):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    photo(inbox / "first.jpg", 0)
    config = PredictConfig(
        model=ModelSettings(checkpoint, precision="fp32"),
        inputs=[inbox],
        out=out,
        save=("cutout",),
        workers=0,
        progress=False,
    )
    rounds, lines = [], []
    deadline = time.monotonic() + 60
    thread = threading.Thread(
        target=lambda: rounds.append(
            watch(
                config,
                lines.append,
                interval=0.05,
                should_stop=lambda: (out / "second_cutout.png").exists() or time.monotonic() > deadline,
            )
        )
    )
    thread.start()
    while not (out / "first_cutout.png").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    photo(inbox / "second.jpg", 1)
    thread.join(timeout=90)
    assert (out / "second_cutout.png").exists()
    assert rounds[0].done == 2 and rounds[0].failed == 0
    rows = list(csv.DictReader(open(out / "manifest.csv", newline="")))
    assert sorted(row["input"] for row in rows) == ["first.jpg", "second.jpg"]


def test_watch_waits_on_an_empty_folder_instead_of_failing(tmp_path, checkpoint):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = PredictConfig(model=checkpoint, inputs=[inbox], out=tmp_path / "out", workers=0, progress=False)
    lines = []
    summary = watch(config, lines.append, interval=0.01, should_stop=lambda: True)
    assert summary.done == 0 and lines == [f"{inbox}: no images in this folder; watching"]
    assert not (tmp_path / "out").exists()
