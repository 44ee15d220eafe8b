"""``predict --listing``: one scale and one baseline for all photos of one folder on the canvas."""

import numpy as np
import pytest
from helpers import make_half_car_checkpoint
from PIL import Image
from typer.testing import CliRunner

from maskingnet.cli import app
from maskingnet.outputs.framing import car_box
from maskingnet.outputs.listing import listing_frame, place_in_listing


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_half_car_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def test_two_cars_of_a_folder_keep_their_size_ratio_and_stand_on_one_baseline():
    wide, narrow = np.zeros((100, 200), np.uint8), np.zeros((100, 200), np.uint8)
    wide[40:80, 20:180] = 255  # a side view: 160 x 40
    narrow[30:80, 70:130] = 255  # a front view: 60 x 50
    frame = listing_frame([car_box(wide), car_box(narrow)], 0.0, (320, 100))
    placed = [car_box(place_in_listing(mask, car_box(mask), frame, (0,))) for mask in (wide, narrow)]
    (l1, t1, r1, b1), (l2, t2, r2, b2) = placed
    assert (r1 - l1) / (r2 - l2) == pytest.approx(160 / 60, rel=0.05)
    assert abs(b1 - b2) <= 1 and abs((l1 + r1) / 2 - (l2 + r2) / 2) <= 1


def photo(path, size, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    base = np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3)
    noise = np.random.default_rng(seed).integers(0, 70, base.shape)
    Image.fromarray((base * 0.7 + noise).astype(np.uint8)).save(path, format="JPEG")


def alpha_box(path):
    return car_box(np.asarray(Image.open(path))[..., 3] > 127)


def test_predict_listing_gives_every_photo_of_a_folder_the_same_scale(tmp_path, checkpoint):
    photo(tmp_path / "shop" / "car1" / "small.jpg", (48, 32), 0)
    photo(tmp_path / "shop" / "car1" / "large.jpg", (96, 64), 1)
    result = CliRunner().invoke(
        app,
        [
            "predict",
            str(tmp_path / "shop"),
            "--out",
            str(tmp_path / "out"),
            "--save",
            "mask,cutout",
            "--canvas",
            "200x100",
            "--listing",
            "-m",
            str(checkpoint),
            "--workers",
            "0",
            "--no-progress",
            "--precision",
            "fp32",
        ],
    )
    assert result.exit_code == 0, result.output
    folder = tmp_path / "out" / "car1"
    scales, bottoms = [], []
    for name in ("small", "large"):
        left, top, right, bottom = car_box(np.asarray(Image.open(folder / f"{name}_mask.png")) > 0)
        placed = alpha_box(folder / f"{name}_cutout.png")
        assert Image.open(folder / f"{name}_cutout.png").size == (200, 100)
        scales.append((placed[2] - placed[0]) / (right - left))
        bottoms.append(placed[3])
    assert scales[0] == pytest.approx(scales[1], rel=0.1)
    assert abs(bottoms[0] - bottoms[1]) <= 2
    assert not list((tmp_path / "out").glob(".maskingnet-listing-*"))


def test_listing_needs_a_canvas(tmp_path, checkpoint):
    photo(tmp_path / "shop" / "a.jpg", (48, 32), 0)
    result = CliRunner().invoke(
        app,
        [
            "predict",
            str(tmp_path / "shop"),
            "--out",
            str(tmp_path / "out"),
            "--listing",
            "-m",
            str(checkpoint),
        ],
    )
    assert result.exit_code == 1 and "--listing" in result.output and "--canvas" in result.output


def test_under_torchrun_a_listing_s_folder_stays_with_one_rank():
    from pathlib import Path, PurePosixPath

    from maskingnet.predict.config import Job
    from maskingnet.predict.run import rank_share

    jobs = [Job(Path(name), PurePosixPath(name), []) for name in ("a/1.jpg", "a/2.jpg", "b/1.jpg", "b/2.jpg")]
    shares = [rank_share(jobs, rank, 2, by_folder=True) for rank in range(2)]
    assert [[str(job.rel) for job in share] for share in shares] == [
        ["a/1.jpg", "a/2.jpg"],
        ["b/1.jpg", "b/2.jpg"],
    ]
    assert [str(job.rel) for job in rank_share(jobs, 0, 2)] == ["a/1.jpg", "b/1.jpg"]
