"""The demo: a small synthetic set and a gallery of photos with their masks."""

from __future__ import annotations

import numpy as np
from PIL import Image

from maskingnet.demo import DemoConfig, run_demo


def test_demo_writes_data_and_a_gallery(tmp_path):
    config = DemoConfig(out=tmp_path / "demo", cars=1, size=(96, 64), workers=1)
    summary = run_demo(config, log=lambda line: None)
    assert len(list((tmp_path / "demo" / "data" / "train").glob("*.jpg"))) == 16
    gallery = Image.open(summary["gallery"])
    assert gallery.format == "PNG" and gallery.width > 0


def test_quick_demo_is_smaller_than_the_full_one():
    full, quick = DemoConfig(), DemoConfig(quick=True).scaled()
    assert quick.cars < full.cars and quick.size[0] < full.size[0]


def test_demo_cuts_out_real_photos_with_the_bundled_model(tmp_path, real_sample):
    config = DemoConfig(
        out=tmp_path / "demo",
        cars=1,
        size=(96, 64),
        workers=1,
        photos=real_sample / "train",
        bundled_photos=2,
    )
    summary = run_demo(config, log=lambda line: None)
    cutouts = sorted((tmp_path / "demo" / "bundled").glob("*_cutout.png"))
    assert summary["bundled"]["done"] == 2 and len(cutouts) == 2
    alpha = np.asarray(Image.open(cutouts[0]).getchannel("A"))
    assert 0.05 < (alpha > 127).mean() < 0.6
