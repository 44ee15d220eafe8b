"""Training the edge refiner on a run's training cars (tiny sizes: seconds)."""

from __future__ import annotations

import pytest

from maskingnet.data.carvana import scan
from maskingnet.models import load_model, read_config
from maskingnet.models.checkpoint import load_refiner
from maskingnet.train.refiner import (
    RefinerTrainConfig,
    RefinerTrainError,
    damaged_truth,
    sample_across_cars,
    train_refiner,
    training_records,
)


def tiny(trained_run, synth_dir, out, **overrides) -> RefinerTrainConfig:
    settings = dict(
        data=str(synth_dir),
        model=str(trained_run / "checkpoints" / "best.safetensors"),
        out=str(out),
        steps=3,
        batch_size=2,
        tile=16,
        margin=4,
        band=3,
        channels=4,
        progress=False,
    )
    return RefinerTrainConfig(**{**settings, **overrides})


def test_refiner_training_writes_the_network_with_its_refiner(trained_run, synth_dir, tmp_path):
    config = tiny(trained_run, synth_dir, tmp_path / "refined.safetensors")
    summary = train_refiner(config, say=lambda line: None)
    refiner = load_refiner(summary["out"])
    assert refiner is not None and refiner.config.tile == 16 and refiner.config.channels == 4
    network = load_model(summary["out"])
    assert network.meta == load_model(trained_run / "checkpoints" / "best.safetensors").meta


def test_refiner_never_trains_on_the_networks_val_cars(trained_run, synth_dir):
    _config, meta = read_config(trained_run / "checkpoints" / "best.safetensors")
    records = training_records(str(synth_dir), meta)
    val_cars = set(meta["split"]["val_cars"])
    assert records and not {record.car_id for record in records} & val_cars
    assert len(records) == len([r for r in scan(synth_dir).records if r.car_id not in val_cars])


def test_a_sample_of_photos_covers_as_many_cars_as_it_can(synth_dir):
    records = scan(synth_dir).records  # 3 cars x 16 angles
    chosen = sample_across_cars(records, 5, seed=0)
    cars = [record.car_id for record in chosen]
    assert len(chosen) == 5 and len(set(cars)) == 3 and max(cars.count(car) for car in cars) == 2
    assert sample_across_cars(records, 5, seed=0) == chosen
    assert sample_across_cars(records, None, seed=0) == records


def test_a_model_without_a_recorded_split_is_refused(synth_dir):
    with pytest.raises(RefinerTrainError, match="val cars"):
        training_records(str(synth_dir), {"input_size": [64, 64]})


def test_damaged_truth_stays_a_probability_map_near_the_truth():
    import numpy as np

    truth = np.zeros((64, 96), np.float32)
    truth[20:44, 20:76] = 1.0
    damaged = damaged_truth(truth, np.random.default_rng(0))
    assert damaged.shape == truth.shape and damaged.min() >= 0 and damaged.max() <= 1
    assert ((damaged > 0.5) == (truth > 0.5)).mean() > 0.8
