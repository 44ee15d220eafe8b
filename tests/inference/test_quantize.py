"""int8 inference (maskingnet.inference.quantize): the quantized path, its accuracy, where it is refused."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from maskingnet import runtime
from maskingnet.data.metrics import dice
from maskingnet.inference import TorchBackend, resolve_precision
from maskingnet.inference.quantize import Int8Stack, is_int8, quantize_model, synthetic_calibration

pytestmark = pytest.mark.skipif(
    runtime.int8_unavailable_reason(torch.device("cpu")) is not None, reason="no x86 quantized engine"
)

SIZE = (240, 160)


@pytest.fixture(scope="module")
def bundled():
    from maskingnet import load_model

    return load_model("maskingnet-carvana")


@pytest.fixture(scope="module")
def int8_bundled(bundled):
    calibration = synthetic_calibration(SIZE, photos=4)
    return TorchBackend(bundled, device="cpu", precision="int8", calibration=calibration)


def test_int8_masks_agree_with_fp32_on_the_bundled_model(bundled, int8_bundled):
    """Unseen synthetic cars (not the calibration's), masks at half the model's input size: the bundled
    models score about 0.99 here (0.999 on real photos at full size); a broken int8, e.g. full 8-bit
    activations that saturate AVX2's int8 multiply, scores about 0.86."""
    batch = synthetic_calibration(SIZE, photos=8)[1]
    reference = TorchBackend(bundled, device="cpu", precision="fp32")(*batch) > 0.5
    candidate = int8_bundled(*batch) > 0.5
    assert reference.float().mean() > 0.1
    assert float(dice(reference.numpy(), candidate.numpy())) > 0.98


def test_int8_backend_runs_quantized_stacks_and_keeps_full_resolution_in_fp32(int8_bundled):
    model = int8_bundled.model
    assert is_int8(model)
    assert not isinstance(model.encoder[0], Int8Stack)
    assert not isinstance(model.decoder[-1].convs, Int8Stack)
    assert all(isinstance(stage, Int8Stack) for stage in model.encoder[1:])


def test_quantize_model_leaves_the_callers_model_in_float(bundled):
    small = [(torch.zeros(1, 3, 32, 32), None)]
    quantize_model(bundled, small)
    assert not is_int8(bundled)
    assert bundled.encoder[0][0].conv.weight.dtype == torch.float32


def test_int8_is_refused_off_the_cpu_with_one_line(monkeypatch):
    monkeypatch.setattr(runtime, "resolve_device", lambda device="auto": torch.device("cuda"))
    with pytest.raises(runtime.PrecisionError, match="int8 runs on the CPU only") as caught:
        resolve_precision("int8", "cuda")
    assert "\n" not in str(caught.value)


def test_auto_never_picks_int8():
    assert resolve_precision("auto", "cpu") != "int8"


def test_predict_accepts_precision_int8(tmp_path):
    from helpers import make_half_car_checkpoint
    from PIL import Image

    checkpoint = make_half_car_checkpoint(tmp_path / "tiny.safetensors")
    Image.new("RGB", (96, 64), (120, 90, 60)).save(tmp_path / "car.png")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "maskingnet",
            "predict",
            "-m",
            str(checkpoint),
            str(tmp_path / "car.png"),
            "--out",
            str(tmp_path / "out"),
            "--precision",
            "int8",
            "--workers",
            "0",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert list((tmp_path / "out").rglob("car*.png"))


def test_bench_int8_reports_speedups_and_agreement_on_real_photos(real_sample):
    from maskingnet.bench.default_model import bench_int8, int8_markdown

    photo = sorted((real_sample / "train").glob("*.jpg"))[0]
    section = bench_int8([photo], rounds=1, quick=True, say=lambda line: None)
    assert section["speedup_vs_fp32"] > 0 and "speedup_vs_bf16" in section
    assert 0.9 < section["mask_agreement_dice"] <= 1.0
    assert "## int8" in "\n".join(int8_markdown(section))


def test_int8_is_refused_on_the_onnxruntime_backend():
    from maskingnet.inference import load_backend
    from maskingnet.models.onnx import ExportError

    with pytest.raises(ExportError, match="int8"):
        load_backend(None, device="cpu", precision="int8", backend="onnxruntime")
