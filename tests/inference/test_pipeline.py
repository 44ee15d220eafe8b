"""maskingnet.inference's one pipeline: full_resolution (the edge-stage hook), ordered sinks, the spec."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import make_half_car_checkpoint
from PIL import Image

from maskingnet.inference import (
    Failed,
    Predictor,
    RleSink,
    Sink,
    full_resolution,
    load_backend,
    run,
    upsample_probs,
)
from maskingnet.models import load_model, load_spec
from maskingnet.models.spec import InputSpec


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_half_car_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", (48, 32))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    paths = []
    for index, (width, height) in enumerate([(60, 40), (45, 30), (90, 60), (30, 20), (75, 50)]):
        path = folder / f"car{index}.png"
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


class Recorder:
    """A PostProcess that records what it was given and inverts the up-sampled probabilities."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...] | None]] = []

    def __call__(self, probs_small, photo, size):
        self.calls.append((size, tuple(probs_small.shape), None if photo is None else photo.shape))
        return 1.0 - full_resolution(probs_small, photo, size, None)


def test_full_resolution_without_post_is_bilinear_upsampling():
    small = torch.rand(8, 12, generator=torch.Generator().manual_seed(0))
    expected = upsample_probs(small[None], (30, 45))[0].numpy()
    probs = full_resolution(small, None, (45, 30), None)
    assert probs.dtype == np.float32 and probs.shape == (30, 45) and np.array_equal(probs, expected)


def test_full_resolution_hands_the_photo_to_the_post_process():
    post, photo = Recorder(), np.zeros((30, 45, 3), np.uint8)
    small = torch.full((8, 12), 0.25)
    probs = full_resolution(small, photo, (45, 30), post)
    assert post.calls == [((45, 30), (8, 12), (30, 45, 3))] and np.allclose(probs, 0.75)


def test_predictor_runs_its_post_process_with_the_decoded_photo(checkpoint, photos):
    post = Recorder()
    plain = Predictor(checkpoint, precision="fp32", refine=False, clean=False).predict(photos[0])
    refined = Predictor(checkpoint, precision="fp32", post=post).predict(photos[0])
    assert post.calls == [((60, 40), (32, 48), (40, 60, 3))]
    np.testing.assert_allclose(refined, 1.0 - plain, atol=1e-6)


class ListSink(Sink):
    """Keeps every photo's mean probability, and calls the third photo a failure."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[int] = []

    def consume(self, item, probs):
        return Failed("third") if item.index == 2 else float(probs.mean())

    def finish(self, item, result):
        super().finish(item, result)
        self.order.append(item.index)

    def fail(self, item, message):
        super().fail(item, message)
        self.order.append(item.index)


@pytest.mark.parametrize("workers", [0, 2], ids=["decoded-in-process", "decoding-processes"])
def test_run_delivers_in_input_order_with_failures_in_place(checkpoint, photos, tmp_path, workers):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    sources = [photos[0], broken, *photos[1:]]
    sink = run(sources, Predictor(checkpoint, precision="fp32"), ListSink(), batch_size=2, workers=workers)
    assert sink.order == list(range(len(sources)))
    assert (sink.done, sink.failed) == (4, 2)
    assert "broken.png" in sink.problems[0] and sink.problems[1] == "third"


def test_run_calls_the_post_process_once_per_photo_with_the_photo(checkpoint, photos):
    post = Recorder()
    predictor = Predictor(checkpoint, precision="fp32", post=post)
    rows: list[str] = []
    run(photos, predictor, RleSink([p.name for p in photos], lambda text, n: rows.append(text)), workers=0)
    assert len(post.calls) == len(photos) and all(call[2] is not None for call in post.calls)
    assert [row.split(",")[0] for row in "".join(rows).splitlines()] == [p.name for p in photos]


def test_rle_rows_are_the_predictors_masks(checkpoint, photos):
    from maskingnet.data.rle import rle_decode

    predictor = Predictor(checkpoint, precision="fp32")
    chunks: list[str] = []
    sink = run(photos, predictor, RleSink([p.name for p in photos], lambda t, n: chunks.append(t), 0.5, 2))
    assert sink.done == len(photos) and len(chunks) == 3  # flushed every 2 rows, the last one at close
    for path, line in zip(photos, "".join(chunks).splitlines(), strict=True):
        mask = predictor.mask(path)
        assert np.array_equal(rle_decode(line.split(",")[1], mask.shape), mask)


def test_the_spec_is_stored_with_the_weights_and_exposed_by_the_backend(checkpoint):
    spec = load_spec(checkpoint)
    assert spec == InputSpec(size=(48, 32)) and load_model(checkpoint).spec == spec
    assert load_backend(checkpoint, device="cpu", precision="fp32").spec == spec
    assert Predictor(checkpoint).size == (48, 32)


def test_a_spec_round_trips_through_json():
    spec = InputSpec(size=(96, 64), scale=0.25, class_names=("bg", "car"))
    assert InputSpec.from_json(spec.to_json()) == spec
