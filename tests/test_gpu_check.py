"""``benchmarks/gpu_check.py`` (``make gpu-check``): its no-GPU branch and its report, on this CPU machine."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    """The script as a module (registered while in use: its dataclasses look their module up)."""
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["gpu_check"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_without_a_gpu_it_says_so_checks_nothing_and_exits_0(tmp_path):
    command = [sys.executable, str(SCRIPT), "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True)
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("gpu-check: no CUDA GPU (")
    assert (result["gpu"], result["checks"]) == (False, [])
    assert "CUDA" in result["reason"] and result["environment"]["torch"] == torch.__version__


def test_a_failing_check_is_recorded_with_its_error_and_the_run_goes_on(gpu_check):
    def broken():
        raise RuntimeError("exit 1: predict\nCUDA error: an illegal memory access")

    check = gpu_check.timed("predict", broken)
    assert (check.ok, check.detail.splitlines()[-1]) == (False, "CUDA error: an illegal memory access")


def test_mask_agreement_is_the_lowest_dice_over_the_masks(gpu_check, tmp_path):
    from PIL import Image

    full, half = Image.new("L", (4, 2), 255), Image.new("L", (4, 2), 0)
    half.paste(255, (0, 0, 2, 2))
    for folder, masks in (("ref", (full, full)), ("ours", (full, half))):
        (tmp_path / folder).mkdir()
        for index, mask in enumerate(masks):
            mask.save(tmp_path / folder / f"car_{index}_mask.png")
    assert gpu_check.mask_agreement(tmp_path / "ours", tmp_path / "ref") == pytest.approx(2 * 4 / (8 + 4))


def test_the_report_puts_the_gpu_table_beside_the_thesis_figures(gpu_check):
    row = {
        "name": "maskingnet",
        "train_ms_per_image": 21.04,
        "thesis_train_ms": 180.46,
        "test_ms_per_image": 5.61,
        "thesis_test_ms": 46.609,
    }
    bench = {"gpu": "NVIDIA H100", "size": 512, "batch": 4, "rows": [row]}
    checks = [{"name": "bench: six networks", "ok": True, "seconds": 9.0, "detail": "", "data": bench}]
    text = gpu_check.markdown({"when": "now", "environment": {}, "gpu": True, "checks": checks})
    assert "| `maskingnet` | 21.0 | 180.46 | 5.6 | 46.609 |" in text
    assert "NVIDIA H100, 512x512, batch 4" in text


def test_a_failed_command_reports_maskingnet_s_own_line_before_the_launcher_s_tail(gpu_check):
    said = "train: data: split left 16 train / 0 val images"
    script = f"import sys; sys.stderr.write('{said}\\n' + 'launcher\\n' * 20); sys.exit(1)"
    with pytest.raises(RuntimeError) as failure:
        gpu_check.run([sys.executable, "-c", script])
    assert said in str(failure.value)
