"""Training on a named list of val cars, from a cache, and what the checkpoint records of its cars."""

from __future__ import annotations

import json

import pytest
from helpers import train_tiny

from maskingnet.models import load_model
from maskingnet.train import TrainConfig, train
from maskingnet.train.config import TrainError
from maskingnet.train.split import read_car_list
from maskingnet.train.trainer import epoch_line
from maskingnet.utils.progress import format_duration


def synth_cars(synth_dir) -> list[str]:
    return sorted({path.name[:12] for path in (synth_dir / "train").glob("*.jpg")})


@pytest.fixture(scope="module")
def listed_run(synth_dir, tmp_path_factory):
    """A one-epoch run validated on the second synthetic car, read from a cache."""
    out = tmp_path_factory.mktemp("listed") / "run"
    val_car = synth_cars(synth_dir)[1]
    train_tiny(synth_dir, out, epochs=1, val_cars=(val_car,), cache=str(out.parent / "cache"))
    return out, val_car


def test_listed_val_cars_are_exactly_the_val_split(listed_run, synth_dir):
    out, val_car = listed_run
    split = json.loads((out / "config.json").read_text())["split"]
    assert split["val_cars"] == [val_car]
    assert split["train_cars"] == [car for car in synth_cars(synth_dir) if car != val_car]


def test_checkpoint_metadata_lists_train_and_val_cars(listed_run, synth_dir):
    out, val_car = listed_run
    meta = load_model(out / "checkpoints" / "best.safetensors").meta
    assert meta["split"]["val_cars"] == [val_car]
    assert sorted(meta["split"]["train_cars"] + meta["split"]["val_cars"]) == synth_cars(synth_dir)


def test_the_run_reads_its_photos_from_the_cache(listed_run):
    out, _ = listed_run
    assert len(list((out.parent / "cache" / "64x64").glob("*.npy"))) == 48


def test_val_car_missing_from_the_data_is_one_line(synth_dir, tmp_path):
    config = TrainConfig(
        data=str(synth_dir),
        out=str(tmp_path / "run"),
        width=0.125,
        size=(64, 64),
        epochs=1,
        workers=0,
        progress=False,
        val_cars=("0123456789ab",),
    )
    with pytest.raises(TrainError, match="val cars not in the data: 0123456789ab"):
        train(config)


def test_car_list_from_a_file_skips_comments_and_blank_lines(tmp_path):
    listing = tmp_path / "cars.txt"
    listing.write_text("# val cars\naaaaaaaaaaaa\n\nbbbbbbbbbbbb, cccccccccccc  # the last\n")
    assert read_car_list(f"@{listing}") == ("aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc")


def test_car_list_from_the_command_line():
    assert read_car_list("aaaaaaaaaaaa,bbbbbbbbbbbb") == ("aaaaaaaaaaaa", "bbbbbbbbbbbb")


def test_unreadable_car_list_names_the_file(tmp_path):
    with pytest.raises(TrainError, match="missing.txt"):
        read_car_list(f"@{tmp_path / 'missing.txt'}")


def test_val_cars_and_fold_exclude_each_other():
    with pytest.raises(ValueError, match="--val-cars and --fold"):
        TrainConfig(val_cars=("aaaaaaaaaaaa",), fold=0)


def test_epoch_line_says_how_long_the_remaining_epochs_take():
    row = {
        "epoch": 2,
        "train_loss": 0.1,
        "val_loss": 0.1,
        "val_dice": 0.9,
        "images_per_s": 5.0,
        "seconds": 750.0,
    }
    assert epoch_line(row, 8, eta=4500.0).endswith("(5.0 img/s, 12 min 30 s, 1 h 15 min to go)")
    assert "to go" not in epoch_line({**row, "epoch": 8}, 8, eta=0.0)


def test_durations_read_as_a_person_writes_them():
    assert [format_duration(s) for s in (42, 785, 7500)] == ["42 s", "13 min 5 s", "2 h 05 min"]
