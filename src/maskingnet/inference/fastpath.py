"""The CPU fast path: BatchNorm folded into the convolutions, conv+ReLU fused in oneDNN with weights
pre-packed once, channels-last memory, the first encoder stage kept in fp32 inside a bf16 network.

This is what ``precision="auto"`` runs on a CPU (bf16 where the CPU has it natively, else fp32); on CUDA the
same folding and layout apply without the oneDNN fusion. :func:`prepare_model` is the one entry point.
"""

from __future__ import annotations

import copy
import functools
import warnings

import torch
from torch import nn

from maskingnet.runtime import DTYPES


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
    """True when this torch build has oneDNN's fused conv op and its weight pre-packing (x86 CPU builds).

    These are private ops (``torch.ops.mkldnn._convolution_pointwise``, ``mkldnn_reorder_conv2d_weight``):
    measured against the public routes on the bundled model (docs/benchmarks.md), ``torch.compile`` with
    freezing was no faster and took minutes to compile, ONNX Runtime was slower. Where they are missing,
    :func:`prepare_model` says so once and runs plain convolutions."""
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
        and hasattr(torch._C._nn, "mkldnn_reorder_conv2d_weight")
    )


def onednn_bf16_available() -> bool:
    """Whether oneDNN has bf16 kernels on this CPU (AVX512BW/VL/DQ, AVX-NE-CONVERT or better). Without
    them the fused path cannot run bf16 and bf16 runs as plain (emulated, slow) PyTorch convolutions."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check is not None and check())
    except RuntimeError:
        return False


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
            fold_bn
            and device.type == "cpu"
            and (precision == "fp32" or (precision == "bf16" and onednn_bf16_available()))
            and torch.backends.mkldnn.is_available()
        )
        if fuse and not onednn_fusion_available():
            _say_no_fusion()
            fuse = False
    encoder = getattr(prepared, "encoder", None)
    if fp32_stem is None:
        fp32_stem = fuse and precision != "fp32" and isinstance(encoder, nn.ModuleList) and len(encoder) > 0
    stem = copy.deepcopy(encoder[0]) if fp32_stem else None
    prepared = _place(prepared, device, DTYPES[precision], channels_last)
    if fuse:
        fuse_conv_relu(prepared)
    if stem is not None:
        prepared.encoder[0] = Fp32Stage(fuse_conv_relu(_place(stem, device, torch.float32, channels_last)))
    return prepared


def prepare_refiner(refiner: nn.Module) -> nn.Module:
    """The inference copy of an edge refiner (:class:`~maskingnet.models.refiner.Refiner`): eval mode,
    fp32, plain NCHW layout, conv+ReLU fused with pre-packed weights where oneDNN has the fused ops. Its
    convolutions have 4 to 24 channels, where the fused kernels on NCHW tensors measured about 2x the
    channels-last module (32 tiles of 96x96, 2 cores). The caller's refiner is left untouched."""
    prepared = _place(copy.deepcopy(refiner).eval(), torch.device("cpu"), torch.float32, False)
    if torch.backends.mkldnn.is_available() and onednn_fusion_available():
        fuse_conv_relu(prepared)
    return prepared


@functools.cache
def _say_no_fusion() -> None:
    """The fallback from the fused oneDNN convs, said once per process."""
    warnings.warn(
        "maskingnet: this torch build lacks oneDNN's fused convolution ops "
        "(torch.ops.mkldnn._convolution_pointwise); the CPU fast path runs plain convolutions (slower)",
        RuntimeWarning,
        stacklevel=3,
    )


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
