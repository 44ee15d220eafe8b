"""An unavailable --device is one line naming it and what to do, for every verb that takes --device."""

from __future__ import annotations

import pytest
import torch
from helpers import make_half_car_checkpoint
from PIL import Image
from typer.testing import CliRunner

from maskingnet import runtime
from maskingnet.cli import app
from maskingnet.errors import MaskingnetError
from maskingnet.runtime import DeviceError, resolve_device


@pytest.fixture
def cpu_only_torch(monkeypatch):
    """This process's torch as a CPU-only build, whatever build is installed."""
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def one_gpu(monkeypatch):
    """A CUDA build that sees one GPU (nothing runs on it in these tests)."""
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_cuda_on_a_cpu_only_build_names_the_build_and_the_cuda_install(cpu_only_torch):
    with pytest.raises(
        DeviceError,
        match=r"^--device cuda: this torch \(.+\) was built without CUDA "
        r"\(install the CUDA build: make install TORCH=cuda\)$",
    ):
        resolve_device("cuda")


def test_a_gpu_index_past_the_count_says_how_many_there_are(one_gpu):
    with pytest.raises(DeviceError, match=r"^--device cuda:3: only 1 GPU \(cuda:0\)$"):
        resolve_device("cuda:3")


def test_a_gpu_index_within_the_count_is_accepted(one_gpu):
    assert resolve_device("cuda:0") == torch.device("cuda", 0)


def test_a_cuda_build_without_a_visible_gpu_says_so(monkeypatch):
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="no CUDA GPU is visible"):
        resolve_device("cuda")


def test_a_device_torch_does_not_know_is_a_user_error_listing_the_choices():
    with pytest.raises(DeviceError, match=r"^--device gpu: not a device \(choose auto, cpu, cuda"):
        resolve_device("gpu")


def test_device_error_is_a_maskingnet_error():
    assert issubclass(DeviceError, MaskingnetError)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tiny checkpoint, a labelled plain-layout folder and a Kaggle-style test folder of one photo."""
    root = tmp_path_factory.mktemp("device")
    make_half_car_checkpoint(root / "tiny.safetensors")
    for folder in ("data/images", "data/masks", "test"):
        (root / folder).mkdir(parents=True)
    Image.new("RGB", (64, 48), (40, 90, 160)).save(root / "data/images/car_01.jpg")
    Image.new("L", (64, 48), 255).save(root / "data/masks/car_01.png")
    Image.new("RGB", (64, 48), (40, 90, 160)).save(root / "test/car_01.jpg")
    return root


VERBS = {
    "predict": ["predict", "{root}/test", "--out", "{root}/out", "--no-progress", "-m", "{model}"],
    "cutout": ["cutout", "{root}/test/car_01.jpg", "-o", "{root}/one.png", "-m", "{model}"],
    "evaluate": ["evaluate", "--data", "{root}/data", "--split", "all", "--no-progress", "-m", "{model}"],
    "submit": ["submit", "{root}/test", "--out", "{root}/sub.csv", "--no-progress", "-m", "{model}"],
    "serve": ["serve", "--port", "0", "-m", "{model}"],
    "train": ["train", "--data", "{root}/data", "--out", "{root}/run", "--no-progress"],
    "bench": ["bench", "--quick", "--out", "{root}/bench"],
}


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_verb_refuses_an_unavailable_cuda_in_one_line(verb, inputs, cpu_only_torch):
    fields = {"root": inputs, "model": inputs / "tiny.safetensors"}
    args = [arg.format(**fields) for arg in VERBS[verb]] + ["--device", "cuda"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"{verb}: --device cuda: this torch ({torch.__version__}) was built without CUDA "
        "(install the CUDA build: make install TORCH=cuda)"
    ]


def test_predict_refuses_a_gpu_index_past_the_count_in_one_line(inputs, one_gpu):
    args = [
        "predict",
        str(inputs / "test"),
        "--out",
        str(inputs / "out"),
        "--no-progress",
        "-m",
        str(inputs / "tiny.safetensors"),
        "--device",
        "cuda:3",
    ]
    result = CliRunner().invoke(app, args)
    assert (result.exit_code, result.output.strip()) == (1, "predict: --device cuda:3: only 1 GPU (cuda:0)")


def test_serve_with_several_workers_refuses_an_unavailable_cuda_before_starting_them(inputs, cpu_only_torch):
    model = str(inputs / "tiny.safetensors")
    args = ["serve", "--port", "0", "--workers", "2", "-m", model, "--device", "cuda"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert result.output.startswith("serve: --device cuda: this torch")
    assert len(result.output.splitlines()) == 1


def test_ablation_stops_at_its_first_network_with_the_same_line(inputs, cpu_only_torch):
    args = ["ablation", "--data", str(inputs / "data"), "--out", str(inputs / "ablation"), "--no-progress"]
    result = CliRunner().invoke(app, [*args, "--device", "cuda"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith("ablation: --device cuda: this torch")


@pytest.mark.parametrize(("cores", "cpu", "gpu"), [(1, 0, 0), (2, 0, 1), (4, 2, 3), (16, 4, 4)])
def test_decoding_processes_leave_a_cpu_network_its_cores(monkeypatch, cores, cpu, gpu):
    """On a CPU the network uses every core: decoding processes only where cores are to spare."""
    monkeypatch.setattr(runtime, "usable_cores", lambda: cores)
    assert runtime.decode_workers("cpu") == cpu
    assert runtime.decode_workers("cuda") == gpu
