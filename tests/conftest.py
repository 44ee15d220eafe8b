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
