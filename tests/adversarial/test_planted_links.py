"""Symbolic links planted in a shared output folder: outputs, checkpoints and submission parts are never
written (or chmod-ed) through them, whatever name they sit at."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import pytest
from helpers import make_half_car_checkpoint
from PIL import Image

from maskingnet import utils
from maskingnet.predict import PredictConfig, predict_files
from maskingnet.submit import PartWriter
from maskingnet.utils import atomic_save

SECRET = b"someone else's file\n"


@pytest.fixture
def victim(tmp_path) -> Path:
    """A 0600 file outside the output folder."""
    path = tmp_path / "elsewhere" / "secret.txt"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    path.chmod(0o600)
    return path


def untouched(victim: Path) -> bool:
    return victim.read_bytes() == SECRET and stat.S_IMODE(victim.stat().st_mode) == 0o600


def plant_pid_names(folder: Path, stem: str, suffix: str, victim: Path, pids) -> None:
    """Links at the names a temp file of ``stem``/``suffix`` took when it held only the writer's pid."""
    for pid in pids:
        (folder / f".{stem}.{pid}.tmp{suffix}").symlink_to(victim)


def test_atomic_save_never_writes_through_links_at_pid_names(tmp_path, victim):
    out = tmp_path / "shared"
    out.mkdir()
    plant_pid_names(out, "car", ".png", victim, range(os.getpid() - 2, os.getpid() + 8))
    atomic_save(out / "car.png", lambda tmp: Path(tmp).write_bytes(b"our png"))
    assert (out / "car.png").read_bytes() == b"our png"
    assert untouched(victim)


def test_a_link_at_the_chosen_temp_name_is_passed_over(tmp_path, victim, monkeypatch):
    out = tmp_path / "shared"
    out.mkdir()
    tokens = iter(["guessed", "fresh"])
    monkeypatch.setattr(utils.secrets, "token_hex", lambda _n: next(tokens))
    (out / f".car.{os.getpid()}-guessed.tmp.png").symlink_to(victim)
    atomic_save(out / "car.png", lambda tmp: Path(tmp).write_bytes(b"our png"))
    assert (out / "car.png").read_bytes() == b"our png"
    assert untouched(victim)


def test_a_link_swapped_in_during_the_save_is_neither_chmod_ed_nor_renamed(tmp_path, victim):
    out = tmp_path / "shared"
    out.mkdir()

    def racing_save(tmp) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(victim, tmp)

    with pytest.raises(OSError):
        atomic_save(out / "car.png", racing_save)
    assert untouched(victim)
    assert not (out / "car.png").exists()


def test_predict_into_a_folder_with_planted_links_leaves_the_target_alone(tmp_path, victim):
    photo = tmp_path / "in" / "car.png"
    photo.parent.mkdir()
    Image.new("RGB", (64, 48), (120, 120, 120)).save(photo)
    out = tmp_path / "shared"
    out.mkdir()
    pids = range(os.getpid() - 2, os.getpid() + 8)
    for stem, suffix in (("car_mask", ".png"), ("manifest", ".csv"), ("settings", ".json")):
        plant_pid_names(out, stem, suffix, victim, pids)
    checkpoint = make_half_car_checkpoint(tmp_path / "tiny.safetensors")
    config = PredictConfig(checkpoint, [photo.parent], out, save=("mask",), workers=0, progress=False)
    assert predict_files(config, report=lambda line: None).done == 1
    assert Image.open(out / "car_mask.png").size == (64, 48)
    assert untouched(victim)


def test_a_link_planted_at_a_submission_part_is_replaced_not_followed(tmp_path, victim):
    partial = tmp_path / ".submission.csv.part0of1.partial"
    partial.symlink_to(victim)
    writer = PartWriter(partial, tmp_path / ".progress.json", "fingerprint", gz=False, expected_rows=1)
    writer.write("img,rle_mask\n", 0)
    writer.close()
    assert untouched(victim)
    assert not partial.is_symlink() and partial.read_bytes() == b"img,rle_mask\n"
