"""int8 inference on x86 CPUs: post-training static quantization of the conv stages.

Every conv stack below full resolution (encoder stages 1.., decoder blocks but the last) becomes one int8
island: its input is quantized once, its conv+ReLU layers run as PyTorch's quantized kernels (the ``x86``
engine: fbgemm / oneDNN), and its output is de-quantized. Max-pooling with indices, un-pooling,
concatenation, the coordinate maps, the full-resolution stages and the classifier stay fp32 (oneDNN-fused
as in the fast path): PyTorch has no quantized max-pool that returns indices.

This is torch.ao's eager-mode API, which PyTorch marks deprecated in favour of torchao's PT2E flow
(``torch.ao.quantization.quantize_pt2e`` is gone from torch 2.13). It was kept because ONNX Runtime's QDQ
int8 was no faster here (1.2x fp32; this path 1.0-1.3x) and missed Dice 0.999 against fp32, and the PT2E
flow needs torchao (not a dependency) and ``torch.compile``, which took over 10 minutes for this model on
the project's contended 2 cores (docs/benchmarks.md, "int8").

Activation scales come from calibration: :func:`quantize_model` runs the BN-folded model with observers on
a few photos. By default those are :func:`synthetic_calibration` photos, rendered by maskingnet's synthetic
car generator at load time, so int8 needs no data of the user's and gives the same model every run.

Activations are quantized to 7 bits (``reduce_range``). Without VNNI, x86 int8 kernels multiply with
``vpmaddubsw``, whose 16-bit pair sums saturate with full 8-bit activations: on this project's AVX2 CPU
that cut mask agreement with fp32 from 0.998 to 0.86 (Dice at 1918x1280).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator

import torch
from torch import nn

from maskingnet.models.spec import InputSpec
from maskingnet.runtime import INT8_ENGINE

from .fastpath import fold_batchnorm, fuse_conv_relu, onednn_fusion_available

CALIBRATION_PHOTOS = 8
CALIBRATION_BATCH = 4
# Carvana photos are 1918x1280: calibrate with the coordinate maps of that shape of photo.
CALIBRATION_PHOTO_SIZE = (1918, 1280)

Batch = tuple[torch.Tensor, torch.Tensor | None]


class Int8Stack(nn.Module):
    """One conv stack as an int8 island: quantize the input, quantized conv+ReLU layers, de-quantize."""

    def __init__(self, stack: nn.Module) -> None:
        super().__init__()
        from torch.ao.quantization import DeQuantStub, QuantStub

        self.quant = QuantStub()
        self.body = stack
        self.dequant = DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.body(self.quant(x)))


def quantize_model(
    model: nn.Module,
    calibration: Iterable[Batch],
    *,
    observer: str = "histogram",
    fp32_full_resolution: bool = True,
) -> nn.Module:
    """An int8 copy of an encoder-decoder ``model`` (BN folded, conv stacks quantized, see the module
    docstring), its activation scales calibrated on ``calibration`` batches of ``(images, coords)``.
    The caller's model is left untouched. ``observer``: ``"histogram"`` (its clipping of outliers gave
    the better agreement) or ``"minmax"`` (quicker to calibrate).

    ``fp32_full_resolution`` keeps the first encoder stage and the last decoder block in fp32: the photo
    itself and the first max-pool's arg-max (reused by the last un-pool) are where rounding moves the
    outline. On the bundled model it raised mask agreement with fp32 from 0.9976 to 0.9992 and cost no
    measurable time (those stages have 16 channels, too few for int8 kernels to gain)."""
    import torch.ao.quantization as tq

    torch.backends.quantized.engine = INT8_ENGINE
    prepared = fold_batchnorm(model)
    if not hasattr(prepared, "encoder") or not hasattr(prepared, "decoder"):
        raise ValueError("int8 needs an encoder-decoder network (maskingnet's six)")
    qconfig = tq.QConfig(
        activation=(tq.HistogramObserver if observer == "histogram" else tq.MinMaxObserver).with_args(
            reduce_range=True
        ),
        weight=tq.default_per_channel_weight_observer,
    )
    stacks = list(_conv_stacks(prepared))
    if fp32_full_resolution:
        stacks = stacks[1:-1]
    for holder, name in stacks:
        stack = getattr(holder, name)
        layers = [[f"{i}.conv", f"{i}.relu"] for i, block in enumerate(stack) if hasattr(block, "relu")]
        tq.fuse_modules(stack, layers, inplace=True)
        wrapped = Int8Stack(stack)
        wrapped.qconfig = qconfig
        setattr(holder, name, wrapped)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.ao\.")
        tq.prepare(prepared, inplace=True)
        with torch.inference_mode():
            for images, coords in calibration:
                prepared(images, coords)
        tq.convert(prepared, inplace=True)
    for parameter in prepared.parameters():
        parameter.requires_grad_(False)
    if onednn_fusion_available():
        fuse_conv_relu(prepared.to(memory_format=torch.channels_last))
    return prepared


def _conv_stacks(model: nn.Module) -> Iterator[tuple[nn.Module, str]]:
    """(holder, attribute) of every conv stack: the encoder stages and each decoder block's convs."""
    for index in range(len(model.encoder)):
        yield model.encoder, str(index)
    for block in model.decoder:
        yield block, "convs"


def synthetic_calibration(
    size: tuple[int, int], spec: InputSpec | None = None, photos: int = CALIBRATION_PHOTOS
) -> list[Batch]:
    """Calibration batches of synthetic car photos (``maskingnet synth``'s renderer) at ``size`` (W, H),
    as :func:`~maskingnet.inference.prepare` gives them to the model: one car per photo, every angle."""
    from maskingnet.data.synth_render import render_view

    from .preprocess import model_coords, model_input

    images, coords = [], []
    for index in range(photos):
        photo, _mask = render_view(1000 + index, 1 + (index * 5) % 16, tuple(size))
        images.append(model_input(photo, size, spec))
        coords.append(model_coords(size, CALIBRATION_PHOTO_SIZE))
    return [
        (torch.stack(images[i : i + CALIBRATION_BATCH]), torch.stack(coords[i : i + CALIBRATION_BATCH]))
        for i in range(0, photos, CALIBRATION_BATCH)
    ]


def batches_of(images: torch.Tensor, coords: torch.Tensor | None) -> list[Batch]:
    """A batch already in memory (e.g. the user's first photos) as calibration batches."""
    step = CALIBRATION_BATCH
    return [
        (images[i : i + step], coords[i : i + step] if coords is not None else None)
        for i in range(0, images.shape[0], step)
    ]


def is_int8(model: nn.Module) -> bool:
    """Whether ``model`` came from :func:`quantize_model`."""
    return any(isinstance(module, Int8Stack) for module in model.modules())


def int8_model(model: nn.Module, spec: InputSpec, calibration: Iterable[Batch] | None = None) -> nn.Module:
    """The int8 inference copy of ``model``: calibrated on ``calibration``, by default on synthetic photos
    at the spec's input size (512x512 when it has none)."""
    if calibration is None:
        calibration = synthetic_calibration(spec.size or (512, 512), spec)
    return quantize_model(model, calibration)
