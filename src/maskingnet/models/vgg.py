"""VGG-16 initialisation of the encoder from a local torchvision-format file (never downloads).

The file holds a torchvision ``vgg16`` or ``vgg16_bn`` state dict (``features.N.weight`` ...), as a ``.pth``
(read with ``torch.load(weights_only=True)``, which refuses arbitrary pickled objects) or ``.safetensors``.
Rule ("first 10 layers: pre-trained VGG-16"): walk VGG's convs in order; each one whose shape agrees with
the model's next encoder conv is copied onto it, the others are skipped, until 10 are loaded. So the
SegNet family gets conv1_1..conv4_3 and U-Net (whose 3rd stage has 2 convs) conv1_1..3_2, 4_1, 4_2.
A model whose first conv also sees the coordinate maps (arc2) takes VGG's weights on its RGB slice and
zeros on X/Y.
"""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from .checkpoint import CheckpointError
from .encoder_decoder import COORD_CHANNELS, EncoderDecoder

MAX_VGG_LAYERS = 10
VGG_STAGE_SIZES = (2, 2, 3, 3, 3)
_FEATURE_KEY = re.compile(r"^features\.(\d+)\.weight$")


@dataclass
class VggConv:
    """One VGG conv layer with its BatchNorm (``vgg16_bn``) if the file has one."""

    name: str
    weight: torch.Tensor
    bias: torch.Tensor | None
    bn: dict[str, torch.Tensor] | None


def read_vgg_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a ``.pth`` / ``.safetensors`` VGG file; ``model.``/``module.`` prefixes tolerated."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise CheckpointError(path, "no such file") from err
    except pickle.UnpicklingError as err:
        raise CheckpointError(path, refused_pickle_reason(str(err))) from None
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(path, f"cannot read VGG weights ({reason[:200]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(path, "does not hold a state dict")
    return {_strip_prefix(key): value for key, value in state.items() if isinstance(value, torch.Tensor)}


def refused_pickle_reason(message: str) -> str:
    """What a pickle that ``torch.load(weights_only=True)`` refused holds, in our words: torch's own text
    advises ``weights_only=False``, which would run whatever the file carries."""
    found = re.search(r"GLOBAL ([\w.]+)", message)
    what = f" (it calls {found.group(1)})" if found else ""
    return (
        f"holds pickled objects other than tensors{what}: not a VGG-16 state dict, and never loaded "
        "(a torchvision vgg16 or vgg16_bn file holds tensors only)"
    )


def _strip_prefix(key: str) -> str:
    for prefix in ("module.", "model."):
        if key.startswith(prefix):
            key = key[len(prefix) :]
    return key


def vgg_convs(state: dict[str, torch.Tensor]) -> list[VggConv]:
    """VGG's conv layers in order (``conv1_1`` ...), each with its BatchNorm when the file is ``vgg16_bn``."""
    indices = sorted(
        int(match.group(1))
        for key, value in state.items()
        if (match := _FEATURE_KEY.match(key)) and value.dim() == 4
    )
    names = [f"conv{stage + 1}_{i + 1}" for stage, size in enumerate(VGG_STAGE_SIZES) for i in range(size)]
    convs = []
    for position, index in enumerate(indices):
        bn_prefix = f"features.{index + 1}."
        bn = None
        if f"{bn_prefix}running_mean" in state:
            bn = {key[len(bn_prefix) :]: value for key, value in state.items() if key.startswith(bn_prefix)}
        name = names[position] if position < len(names) else f"features.{index}"
        convs.append(
            VggConv(name, state[f"features.{index}.weight"], state.get(f"features.{index}.bias"), bn)
        )
    return convs


def load_vgg_weights(model: EncoderDecoder, path: str | os.PathLike) -> list[str]:
    """Copy VGG-16 conv (and BN) weights from ``path`` onto ``model``'s first encoder convs; returns the
    loaded layers as ``"conv1_1 -> encoder.0.0"`` strings (empty when nothing fits, e.g. at ``width < 1``)."""
    convs = vgg_convs(read_vgg_state(path))
    if not convs:
        raise CheckpointError(path, "has no VGG 'features.N.weight' conv layers")
    blocks = list(_encoder_blocks(model))
    coord_input = model.config.coords == "input"
    loaded: list[str] = []
    for source in convs:
        if len(loaded) == min(MAX_VGG_LAYERS, len(blocks)):
            break
        module_name, block = blocks[len(loaded)]
        extra_in = COORD_CHANNELS if coord_input and not loaded else 0
        if _fits(source, block.conv, extra_in):
            _copy_conv(source, block, extra_in)
            loaded.append(f"{source.name} -> {module_name}")
    return loaded


def _encoder_blocks(model: EncoderDecoder) -> list[tuple[str, nn.Module]]:
    return [
        (f"encoder.{level}.{index}", block)
        for level, stage in enumerate(model.encoder)
        for index, block in enumerate(stage)
    ]


def _fits(source: VggConv, conv: nn.Conv2d, extra_in: int) -> bool:
    return tuple(source.weight.shape) == (conv.out_channels, conv.in_channels - extra_in, *conv.kernel_size)


@torch.no_grad()
def _copy_conv(source: VggConv, block: nn.Module, extra_in: int) -> None:
    conv: nn.Conv2d = block.conv
    rgb = conv.in_channels - extra_in
    conv.weight.zero_()
    conv.weight[:, :rgb].copy_(source.weight)
    if source.bias is not None and conv.bias is not None:
        conv.bias.copy_(source.bias)
    if source.bn is not None:
        bn: nn.BatchNorm2d = block.bn
        for key in ("weight", "bias", "running_mean", "running_var"):
            if key in source.bn:
                getattr(bn, key).copy_(source.bn[key])
