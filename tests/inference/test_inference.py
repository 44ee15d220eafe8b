"""maskingnet.inference: device/precision choice, BN folding, the fast path, backends, TTA, up-sampling."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from maskingnet import inference, runtime
from maskingnet.inference import (
    TorchBackend,
    fastpath,
    fold_batchnorm,
    load_backend,
    predict_probs,
    resolve_device,
    resolve_precision,
    upsample_probs,
)
from maskingnet.inference.fastpath import onednn_bf16_available


def _tiny_model(name: str = "maskingnet") -> torch.nn.Module:
    """A tiny network whose BatchNorms hold non-trivial statistics, so folding them is really tested."""
    from maskingnet.models import create_model

    torch.manual_seed(0)
    model = create_model(name, width=0.125)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0.0, 0.5)
    return model.eval()


def _images(batch: int = 2, height: int = 32, width: int = 64) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(1))


def test_resolve_device_auto_is_cpu_without_accelerators():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; auto picks it")
    assert resolve_device("auto").type in ("cpu", "mps")


def test_resolve_precision_fp16_on_cpu_falls_back_to_fp32():
    assert resolve_precision("fp16", "cpu") == "fp32"


def test_resolve_precision_rejects_unknown_names():
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("int3", "cpu")


def test_resolve_precision_auto_follows_bf16_support(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_bf16_supported", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(runtime, "cpu_bf16_supported", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"


@pytest.mark.parametrize("name", ["maskingnet", "unet"])
def test_fold_batchnorm_keeps_logits(name):
    model = _tiny_model(name)
    images = _images()
    with torch.no_grad():
        expected = model(images)
        folded = fold_batchnorm(model)(images)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fold_batchnorm(model).modules())
    torch.testing.assert_close(folded, expected, rtol=1e-4, atol=1e-5)


def test_fold_batchnorm_leaves_the_original_model_alone():
    model = _tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fold_batchnorm(model)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_backend_returns_float32_probabilities_on_cpu():
    probs = TorchBackend(_tiny_model(), device="cpu", precision="fp32")(_images())
    assert probs.shape == (2, 32, 64) and probs.dtype == torch.float32 and probs.device.type == "cpu"
    assert float(probs.min()) >= 0.0 and float(probs.max()) <= 1.0


def test_fast_fp32_path_matches_naive_path():
    model, images = _tiny_model(), _images()
    naive = TorchBackend(model, device="cpu", precision="fp32", fast=False)(images)
    fast = TorchBackend(model, device="cpu", precision="fp32")(images)
    torch.testing.assert_close(fast, naive, rtol=1e-4, atol=1e-5)


def test_bf16_fast_path_masks_agree_with_fp32_off_the_fence():
    """bf16 moves probabilities a little; masks must agree wherever fp32 is not within 0.05 of 0.5.

    The classifier is scaled up so that, like a trained model, most pixels are decided."""
    model, images = _tiny_model(), _images()
    with torch.no_grad():
        model.classifier.weight.mul_(50.0)
        model.classifier.bias.mul_(50.0)
    reference = TorchBackend(model, device="cpu", precision="fp32", fast=False)(images)
    fast = TorchBackend(model, device="cpu", precision="bf16")(images)
    decided = (reference - 0.5).abs() > 0.05
    assert decided.float().mean() > 0.5
    assert torch.equal((fast > 0.5)[decided], (reference > 0.5)[decided])


def test_without_bf16_auto_runs_the_fp32_fast_path(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_bf16_supported", lambda: False)
    model, images = _tiny_model(), _images()
    backend = TorchBackend(model, device="cpu", precision="auto")
    assert backend.precision == "fp32"
    naive = TorchBackend(model, device="cpu", precision="fp32", fast=False)(images)
    torch.testing.assert_close(backend(images), naive, rtol=1e-4, atol=1e-5)


class _PositionAwareBackend:
    """Probability = sigmoid(red channel + X map): depends on where each pixel is in the photo."""

    def __call__(self, images, coords):
        return torch.sigmoid(images[:, 0] + 4 * coords[:, 0])


def test_tta_flips_image_and_coords_together():
    backend, images = _PositionAwareBackend(), _images()
    coords = inference.whole_photo_coords(2, 32, 64)
    plain = predict_probs(backend, images, coords, tta=False)
    torch.testing.assert_close(predict_probs(backend, images, coords, tta=True), plain)


def test_tta_builds_whole_photo_coords_when_none_given():
    backend, images = _PositionAwareBackend(), _images()
    coords = inference.whole_photo_coords(2, 32, 64)
    torch.testing.assert_close(predict_probs(backend, images, None, tta=True), backend(images, coords))


def test_whole_photo_coords_follow_the_convention():
    maps = inference.whole_photo_coords(1, 4, 8)
    assert maps.shape == (1, 2, 4, 8)
    assert float(maps[0, 0, 0, 3]) == pytest.approx(3 / 8 - 0.5)
    assert float(maps[0, 1, 2, 0]) == pytest.approx(2 / 4 - 0.5)


def test_upsample_probs_resizes_bilinearly():
    probs = torch.tensor([[[0.0, 1.0]]])
    up = upsample_probs(probs, (1, 4))
    torch.testing.assert_close(up, torch.tensor([[[0.0, 0.25, 0.75, 1.0]]]))


def test_upsample_probs_keeps_numpy_as_numpy():
    up = upsample_probs(np.full((1, 3, 5), 0.7, dtype=np.float32), (12, 20))
    assert isinstance(up, np.ndarray) and up.shape == (1, 12, 20) and np.allclose(up, 0.7)


def test_load_backend_rebuilds_a_saved_checkpoint(tmp_path):
    from maskingnet.models import save_model

    model = _tiny_model()
    path = tmp_path / "model.safetensors"
    save_model(model, path, meta={"input_size": [64, 32]})
    backend = load_backend(path, device="cpu", precision="fp32")
    assert backend.input_size == (64, 32) and backend.config == model.config
    naive = TorchBackend(model, device="cpu", precision="fp32", fast=False)(_images())
    torch.testing.assert_close(backend(_images()), naive, rtol=1e-4, atol=1e-5)


def test_load_backend_hands_onnx_files_to_onnx_runtime(tmp_path, monkeypatch):
    from maskingnet.inference import backends

    monkeypatch.setattr(backends, "OnnxBackend", lambda path, device: ("onnx", path))
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not read: the backend is replaced")
    assert load_backend(path) == ("onnx", path)


def test_fused_conv_matches_conv_then_relu_for_two_input_shapes():
    conv = torch.nn.Conv2d(8, 16, 3, padding=2, dilation=2).eval()
    fused = inference.FusedConv2d(conv, relu=True)
    for shape in [(1, 8, 20, 24), (2, 8, 9, 13)]:
        x = torch.randn(shape)
        with torch.inference_mode():
            torch.testing.assert_close(fused(x), torch.relu(conv(x)), rtol=1e-4, atol=1e-5)


def test_prepare_model_fuses_every_conv_where_onednn_allows():
    prepared = inference.prepare_model(_tiny_model(), torch.device("cpu"), "fp32")
    fused = [m for m in prepared.modules() if isinstance(m, inference.FusedConv2d)]
    plain = [m for m in prepared.modules() if type(m) is torch.nn.Conv2d]
    if inference.onednn_fusion_available():
        assert fused and not plain and all(m.attr == "relu" for m in fused[:-1]) and fused[-1].attr == "none"
    else:
        assert plain and not fused


def test_without_onednn_fusion_the_fast_path_still_matches(monkeypatch):
    monkeypatch.setattr(fastpath, "onednn_fusion_available", lambda: False)
    model, images = _tiny_model(), _images()
    backend = TorchBackend(model, device="cpu", precision="fp32")
    assert not any(isinstance(m, inference.FusedConv2d) for m in backend.model.modules())
    naive = TorchBackend(model, device="cpu", precision="fp32", fast=False)(images)
    torch.testing.assert_close(backend(images), naive, rtol=1e-4, atol=1e-5)


def test_fast_backend_model_survives_deepcopy():
    backend = TorchBackend(_tiny_model(), device="cpu", precision="fp32")
    images = _images()
    expected = backend(images)
    clone = copy.deepcopy(backend.model)
    with torch.inference_mode():
        torch.testing.assert_close(inference.logits_to_probs(clone(images, None)), expected)


def test_bf16_is_not_fused_where_onednn_has_no_bf16_kernels(monkeypatch):
    from maskingnet.inference import fastpath

    monkeypatch.setattr(fastpath, "onednn_bf16_available", lambda: False)
    backend = TorchBackend(_tiny_model(), device="cpu", precision="bf16")
    assert not any(isinstance(m, fastpath.FusedConv2d) for m in backend.model.modules())
    assert backend(_images()).shape[0] == _images().shape[0]


def test_bf16_fast_path_keeps_the_first_stage_in_fp32_where_fused():
    backend = TorchBackend(_tiny_model(), device="cpu", precision="bf16")
    stem = backend.model.encoder[0]
    if inference.onednn_fusion_available() and onednn_bf16_available():
        assert isinstance(stem, inference.Fp32Stage)
        assert all(p.dtype == torch.float32 for p in stem.buffers())
        assert inference.input_dtype(backend.model, torch.bfloat16) == torch.float32
    else:
        assert not isinstance(stem, inference.Fp32Stage)


@pytest.mark.parametrize("name", ["arc2", "unet", "segnet"])
def test_bf16_fast_path_runs_every_coordinate_and_upsampling_variant(name):
    probs = TorchBackend(_tiny_model(name), device="cpu", precision="bf16")(_images())
    assert probs.shape == (2, 32, 64) and torch.isfinite(probs).all()
