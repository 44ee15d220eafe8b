"""Fixtures shared by the whole suite: the real Carvana sample and a tiny synthetic Carvana set."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_SAMPLE = REPO.parent / "shared" / "data" / "carvana-sample"


@pytest.fixture(scope="session")
def real_sample() -> Path:
    """The real Carvana sample beside the checkout (CI always has it)."""
    if not (REAL_SAMPLE / "train").is_dir():
        pytest.skip(f"real Carvana sample not found at {REAL_SAMPLE}")
    return REAL_SAMPLE


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """A tiny synthetic Carvana-format set: 3 train cars x 16 angles, 1 test car, 96x64 pixels."""
    from maskingnet.data.synth import generate

    out = tmp_path_factory.mktemp("synth")
    generate(out, cars=3, test_cars=1, size=(96, 64), seed=0, workers=1)
    return out


@pytest.fixture(scope="session")
def trained_run(synth_dir, tmp_path_factory) -> Path:
    """A finished tiny training run on ``synth_dir`` (maskingnet, width 0.125, 64x64, 2 epochs). Read only."""
    import torch

    from maskingnet.train import TrainConfig, train

    out = tmp_path_factory.mktemp("trained") / "run"
    threads = torch.get_num_threads()
    try:
        train(TrainConfig(data=str(synth_dir), out=str(out), width=0.125, size=(64, 64), epochs=2, threads=1,
                          workers=0, progress=False))
    finally:
        torch.set_num_threads(threads)
    return out
