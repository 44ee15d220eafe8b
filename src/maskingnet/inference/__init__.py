"""Running a trained network: device and precision choice, the CPU fast path, backends, TTA, up-sampling.

A *backend* is a callable ``backend(images (B,3,H,W) float32, coords (B,2,H,W) | None) -> (B,H,W)`` float32
car probabilities on the CPU, with ``.config``, ``.meta``, ``.input_size``, ``.device`` and ``.precision``.
:class:`TorchBackend` wraps a PyTorch model; ONNX Runtime lives in :mod:`maskingnet.export`.

The CPU fast path (what ``precision="auto"`` picks on a CPU with native bf16): BatchNorm folded into the
convolutions, weights and activations in bf16 (the first encoder stage in fp32), channels-last memory
layout, oneDNN conv+ReLU fusion with weights pre-packed once, ``torch.inference_mode``.
On CPUs without bf16 the same path runs in fp32 (folded BN, channels-last) and says so in
:func:`precision_support`.
"""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PRECISIONS = ("fp32", "bf16", "fp16")
BACKENDS = ("auto", "torch", "onnxruntime")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then the CPU; anything else is passed to ``torch.device``."""
    if isinstance(device, torch.device):
        return device
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags from ``/proc/cpuinfo`` (empty where that file does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


@functools.lru_cache(maxsize=1)
def cpu_bf16_supported() -> bool:
    """True when this CPU runs bf16 convolutions natively (AVX512-BF16 or AMX), so bf16 is a speed-up.

    oneDNN's own check is the authority; ``/proc/cpuinfo`` flags are the fallback where that op is missing.
    Emulated bf16 (plain AVX512/AVX2) is slower than fp32, so it does not count.
    """
    if os.environ.get("MASKINGNET_NO_BF16"):
        return False
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if check is not None and torch.backends.mkldnn.is_available():
        try:
            if not check():
                return False
        except RuntimeError:
            pass
    flags = cpu_flags()
    if flags:
        return bool({"avx512_bf16", "amx_bf16"} & flags)
    return check is not None and torch.backends.mkldnn.is_available()


def precision_support(device: str | torch.device = "cpu") -> dict[str, Any]:
    """What this machine offers for inference precision (reported by ``maskingnet bench``)."""
    device = resolve_device(device)
    if device.type == "cuda":
        return {
            "device": str(device),
            "bf16": bool(torch.cuda.is_bf16_supported()),
            "fp16": True,
            "auto": resolve_precision("auto", device),
        }
    flags = cpu_flags()
    return {
        "device": str(device),
        "bf16": cpu_bf16_supported() if device.type == "cpu" else False,
        "fp16": device.type == "mps",
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_flags": sorted({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"} & flags),
        "auto": resolve_precision("auto", device),
    }


def resolve_precision(precision: str = "auto", device: str | torch.device = "cpu") -> str:
    """``"auto"``: bf16 on CUDA GPUs that support it (else fp16), fp16 on MPS, bf16 on CPUs with native bf16
    (else fp32). An explicit request for a precision the device cannot run falls back to fp32."""
    device = resolve_device(device)
    if precision not in ("auto", *PRECISIONS):
        raise ValueError(f"precision must be one of auto, {', '.join(PRECISIONS)}; got {precision!r}")
    if device.type == "cuda":
        if precision == "auto":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return precision
    if device.type == "mps":
        return "fp16" if precision == "auto" else precision
    if precision == "auto":
        return "bf16" if cpu_bf16_supported() else "fp32"
    if precision == "fp16":
        return "fp32"
    return precision


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode where every ``Conv2d`` directly followed by a ``BatchNorm2d`` (in a
    ``nn.Sequential``) has the BN's affine and running statistics folded into its weights and bias, and the
    BN is replaced by ``nn.Identity``. Same logits as the eval-mode original, one pass less over memory."""
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if isinstance(module, nn.Sequential):
            _fold_sequential(module)
    return folded


def _fold_sequential(sequential: nn.Sequential) -> None:
    names = list(sequential._modules)
    for first, second in zip(names[:-1], names[1:], strict=True):
        conv, bn = sequential._modules[first], sequential._modules[second]
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
            _fold_conv_bn(conv, bn)
            sequential._modules[second] = nn.Identity()


@torch.no_grad()
def _fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.affine:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.affine:
        shift = shift + bn.bias.double()
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(shift)
    conv.weight.copy_((conv.weight.double() * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype))
    new_bias = (bias * scale + shift).to(conv.weight.dtype)
    if conv.bias is None:
        conv.bias = nn.Parameter(new_bias)
    else:
        conv.bias.copy_(new_bias)


def onednn_fusion_available() -> bool:
    """True when this torch build has oneDNN's fused conv op and its weight pre-packing (x86 CPU builds)."""
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
        and hasattr(torch._C._nn, "mkldnn_reorder_conv2d_weight")
    )


class FusedConv2d(nn.Module):
    """A ``Conv2d`` (BN already folded in) with its ReLU fused into the oneDNN kernel, and its weights
    pre-packed into oneDNN's blocked layout once per input shape instead of being re-ordered on every call.

    Plain ``F.conv2d`` on CPU re-orders the weights at each call (about a fifth of the conv time for
    MaskingNet) and runs ReLU as a separate pass over memory; this is what ``torch.compile``'s freezing
    does for CPU convolutions, without the compile. Inference only.
    """

    max_shapes = 4

    def __init__(self, conv: nn.Conv2d, relu: bool) -> None:
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("FusedConv2d needs numeric zero padding")
        self.register_buffer("weight", conv.weight.detach().clone())
        bias = conv.bias.detach().clone() if conv.bias is not None else None
        self.register_buffer("bias", bias)
        self.padding = list(conv.padding)
        self.stride = list(conv.stride)
        self.dilation = list(conv.dilation)
        self.groups = conv.groups
        self.attr = "relu" if relu else "none"
        self._packed: dict[tuple, torch.Tensor] = {}

    def _packed_weight(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), x.dtype, self.weight.dtype)
        packed = self._packed.get(key)
        if packed is None:
            packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
                self.weight.to_mkldnn(), self.padding, self.stride, self.dilation, self.groups, list(x.shape)
            )
            if len(self._packed) >= self.max_shapes:
                self._packed.pop(next(iter(self._packed)))
            self._packed[key] = packed
        return packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(
            x.to(self.weight.dtype),
            self._packed_weight(x),
            self.bias,
            self.padding,
            self.stride,
            self.dilation,
            self.groups,
            self.attr,
            [],
            "",
        )

    def _apply(self, fn, recurse=True):
        self._packed = {}
        return super()._apply(fn, recurse)

    def __deepcopy__(self, memo):
        clone = copy.copy(self)
        clone.__dict__ = {
            key: copy.deepcopy(value, memo) for key, value in self.__dict__.items() if key != "_packed"
        }
        clone._packed = {}
        return clone


def fuse_conv_relu(model: nn.Module) -> nn.Module:
    """Replace, in place, every ``Conv2d`` of an eval-mode, BN-folded model by :class:`FusedConv2d`.

    The ``ReLU`` that follows a conv in the same ``nn.Sequential`` (past BN turned ``Identity``) moves into
    the kernel."""
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            _fuse_sequential(module)
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Conv2d:
                setattr(module, name, FusedConv2d(child, relu=False))
    return model


def _fuse_sequential(sequential: nn.Sequential) -> None:
    names = list(sequential._modules)
    for position, name in enumerate(names):
        conv = sequential._modules[name]
        if type(conv) is not nn.Conv2d:
            continue
        following = names[position + 1 :]
        while following and isinstance(sequential._modules[following[0]], nn.Identity):
            following = following[1:]
        relu = bool(following) and isinstance(sequential._modules[following[0]], nn.ReLU)
        sequential._modules[name] = FusedConv2d(conv, relu=relu)
        if relu:
            sequential._modules[following[0]] = nn.Identity()


class Fp32Stage(nn.Module):
    """Runs one stage in fp32 inside a bf16 network: its input is taken in fp32 and its output stays fp32.

    Used for the first encoder stage. Rounding the photo and the full-resolution features to bf16 there
    moves the first max-pool's arg-max (its indices are reused by the last unpool) and costs mask agreement
    with fp32 at the car's outline. The stage is ~4% of MaskingNet's FLOPs; measured no slower overall.
    Needs :class:`FusedConv2d` downstream, which casts its input to its own dtype.
    """

    def __init__(self, stage: nn.Module) -> None:
        super().__init__()
        self.stage = stage

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage(x.float())


def prepare_model(
    model: nn.Module,
    device: torch.device,
    precision: str,
    *,
    fold_bn: bool = True,
    channels_last: bool = True,
    fuse: bool | None = None,
    fp32_stem: bool | None = None,
) -> nn.Module:
    """The inference copy of ``model``: eval mode, BN folded, on ``device``, in the precision's dtype,
    channels-last (CPU and CUDA) and, on CPUs with oneDNN, conv+ReLU fused with pre-packed weights
    (``fuse=None`` means "where available"). With fusion in bf16, the first encoder stage stays fp32
    (:class:`Fp32Stage`; ``fp32_stem=None``: where it applies). The caller's model is left untouched."""
    prepared = fold_batchnorm(model) if fold_bn else copy.deepcopy(model).eval()
    if fuse is None:
        fuse = (
            fold_bn and device.type == "cpu" and precision in ("fp32", "bf16") and onednn_fusion_available()
        )
    encoder = getattr(prepared, "encoder", None)
    if fp32_stem is None:
        fp32_stem = fuse and precision != "fp32" and isinstance(encoder, nn.ModuleList) and len(encoder) > 0
    stem = copy.deepcopy(encoder[0]) if fp32_stem else None
    prepared = _place(prepared, device, _DTYPES[precision], channels_last)
    if fuse:
        fuse_conv_relu(prepared)
    if stem is not None:
        prepared.encoder[0] = Fp32Stage(fuse_conv_relu(_place(stem, device, torch.float32, channels_last)))
    return prepared


def _place(module: nn.Module, device: torch.device, dtype: torch.dtype, channels_last: bool) -> nn.Module:
    module = module.to(device=device, dtype=dtype)
    if channels_last and device.type in ("cpu", "cuda"):
        module = module.to(memory_format=torch.channels_last)
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


def input_dtype(model: nn.Module, dtype: torch.dtype) -> torch.dtype:
    """The dtype a prepared model takes its images in: fp32 when its first stage runs in fp32."""
    encoder = getattr(model, "encoder", None)
    if isinstance(encoder, nn.ModuleList) and len(encoder) and isinstance(encoder[0], Fp32Stage):
        return torch.float32
    return dtype


class TorchBackend:
    """A PyTorch model as a backend: probabilities of class 1 ("car") as float32 ``(B, H, W)`` on the CPU.

    ``fast=True`` (default) runs the fast path: BN folded, the precision's dtype for weights and
    activations, channels-last. ``fast=False`` is the plain eager model under autocast (the reference).
    """

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "auto",
        precision: str = "auto",
        *,
        fast: bool = True,
    ) -> None:
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.config = getattr(model, "config", None)
        self.meta: dict[str, Any] = dict(getattr(model, "meta", {}) or {})
        size = self.meta.get("input_size")
        self.input_size: tuple[int, int] | None = (int(size[0]), int(size[1])) if size else None
        self.fast = fast
        if fast:
            self.model = prepare_model(model, self.device, self.precision)
        else:
            self.model = copy.deepcopy(model).eval().to(self.device)

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.precision]

    def logits(self, images: torch.Tensor, coords: torch.Tensor | None = None) -> torch.Tensor:
        """Raw model output on the backend's device (the dtype the path computes in)."""
        images = images.to(self.device, non_blocking=True)
        coords = coords.to(self.device, non_blocking=True) if coords is not None else None
        with torch.inference_mode():
            if self.fast:
                memory_format = torch.channels_last if self.device.type in ("cpu", "cuda") else None
                dtype = input_dtype(self.model, self.dtype)
                images = images.to(dtype=dtype)
                if memory_format is not None:
                    images = images.contiguous(memory_format=memory_format)
                coords = coords.to(dtype=dtype) if coords is not None else None
                return self.model(images, coords)
            with self._autocast():
                return self.model(images, coords)

    def _autocast(self):
        if self.precision == "fp32" or self.device.type not in ("cpu", "cuda", "mps"):
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.dtype)

    def __call__(self, images: torch.Tensor, coords: torch.Tensor | None = None) -> torch.Tensor:
        with torch.inference_mode():
            return logits_to_probs(self.logits(images, coords))


def logits_to_probs(logits: torch.Tensor) -> torch.Tensor:
    """Class-1 probability as float32 on the CPU: softmax over classes (sigmoid for one-class output)."""
    logits = logits.float()
    if logits.shape[1] == 1:
        probs = torch.sigmoid(logits[:, 0])
    else:
        probs = torch.softmax(logits, dim=1)[:, 1]
    return probs.contiguous().cpu()


def load_backend(
    path: str | os.PathLike,
    device: str | torch.device = "auto",
    precision: str = "auto",
    backend: str = "auto",
):
    """A backend for a checkpoint: ``.onnx`` files or ``backend="onnxruntime"`` give
    :class:`maskingnet.export.OnnxBackend`; everything else a :class:`TorchBackend` on a loaded model."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    path = Path(path)
    if backend == "onnxruntime" or (backend == "auto" and path.suffix.lower() == ".onnx"):
        from maskingnet.export import OnnxBackend

        return OnnxBackend(path)
    from maskingnet.models import load_model

    return TorchBackend(load_model(path, device="cpu"), device=device, precision=precision)


def whole_photo_coords(batch: int, height: int, width: int) -> torch.Tensor:
    """Coordinate maps ``(batch, 2, H, W)`` for uncropped photos: ``X = j / W - 0.5``, ``Y = i / H - 0.5``."""
    xs = torch.arange(width, dtype=torch.float32) / width - 0.5
    ys = torch.arange(height, dtype=torch.float32) / height - 0.5
    maps = torch.stack([xs.view(1, width).expand(height, width), ys.view(height, 1).expand(height, width)])
    return maps.unsqueeze(0).expand(batch, -1, -1, -1).contiguous()


def predict_probs(backend, images: torch.Tensor, coords: torch.Tensor | None = None, tta: bool = False):
    """Car probabilities ``(B, H, W)`` float32 on the CPU for a batch of normalised images.

    With ``tta`` the horizontally flipped batch is also run - image *and* coordinate maps flipped together,
    so every pixel keeps its true coordinates - and the two probability maps are averaged after flipping the
    second one back. When ``coords`` is None the whole-photo maps are built (what the model itself would use).
    """
    if not tta:
        return backend(images, coords)
    if coords is None:
        coords = whole_photo_coords(images.shape[0], images.shape[-2], images.shape[-1])
    probs = backend(images, coords)
    flipped = backend(torch.flip(images, dims=[-1]), torch.flip(coords, dims=[-1]))
    return (probs + torch.flip(flipped, dims=[-1])) / 2


def upsample_probs(probs, size: tuple[int, int]):
    """Bilinear resize of probabilities ``(B, h, w)`` to ``size = (H, W)``; thresholding comes after.

    Accepts a tensor (returns a float32 tensor) or a numpy array (returns a float32 array).
    """
    as_numpy = isinstance(probs, np.ndarray)
    tensor = torch.from_numpy(np.ascontiguousarray(probs)) if as_numpy else probs
    tensor = tensor.float()
    height, width = int(size[0]), int(size[1])
    if tuple(tensor.shape[-2:]) != (height, width):
        tensor = F.interpolate(
            tensor.unsqueeze(1), size=(height, width), mode="bilinear", align_corners=False
        )
        tensor = tensor.squeeze(1).clamp_(0.0, 1.0)
    return tensor.numpy() if as_numpy else tensor
