"""ONE configurable encoder-decoder; the six networks of the thesis are six rows of :class:`ModelConfig`.

Levels are scales: level ``L`` works at ``1 / 2**L`` of the (padded) input. Encoder stage ``L`` is a stack
of conv blocks at level ``L``; a 2x2 max-pool (keeping its indices) follows stages ``0 .. pools-1``, where
``pools = len(decoder)``: SegNet-style configs pool after every stage (5 pools, the decoder starts by
undoing pool 5), U-Net-style configs do not pool after the last stage (the bottleneck). Decoder blocks are
listed deepest first; the block for level ``L`` up-samples to level ``L`` (unpool with pool ``L``'s indices,
or a transposed conv), concatenates ``cat([decoder, encoder_L])`` when ``L`` is in ``concat_levels``, then
runs its conv blocks. A plain conv classifier gives the logits.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from maskingnet.data.coords import coord_maps, pad_coord_maps

from . import fields
from .blocks import ConvStack, TransposedUp, pool_with_indices, unpool_with_indices

UPSAMPLE_KINDS = ("unpool", "transposed")
COORD_PLACES = ("none", "input", "mid")
COORD_CHANNELS = 2
VGG16_ENCODER = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
SEGNET_DECODER = ((512, 512, 512), (512, 512, 256), (256, 256, 128), (128, 64), (64,))


@dataclass(frozen=True)
class ModelConfig:
    """The ablation switches of the thesis as configuration fields (channel counts are at ``width=1``).

    - ``encoder``: conv output channels of each encoder stage, one tuple per level.
    - ``decoder``: conv output channels of each decoder block, deepest first; ``len(decoder)`` is the
      number of pools (``len(encoder)`` or ``len(encoder) - 1``).
    - ``upsample``: ``"unpool"`` (reuse max-pooling indices) or ``"transposed"`` (ConvTranspose2d k2 s2 to
      the channel count of the encoder stage it joins).
    - ``concat_levels``: levels whose encoder output is concatenated after up-sampling.
    - ``coords``: ``"none"``, ``"input"`` (X/Y maps concatenated to the image) or ``"mid"`` (maps taken one
      pixel in ``2**coord_level`` and concatenated to the input of encoder stage ``coord_level``).
    - ``dilation``: dilation rate of the 3x3 convs at each level (encoder stage and decoder block).
    - ``classifier_kernel``: kernel of the final conv (3 in the SegNet family, 1 in U-Net).
    - ``width``: multiplies every channel count (rounded, at least 1).
    """

    name: str = "custom"
    encoder: tuple[tuple[int, ...], ...] = VGG16_ENCODER
    decoder: tuple[tuple[int, ...], ...] = SEGNET_DECODER
    upsample: str = "unpool"
    concat_levels: tuple[int, ...] = ()
    coords: str = "none"
    coord_level: int = 4
    dilation: tuple[int, ...] = (1, 1, 1, 1, 1)
    classifier_kernel: int = 3
    width: float = 1.0
    in_channels: int = 3
    num_classes: int = 2

    def __post_init__(self) -> None:
        for name in ("encoder", "decoder"):
            stages = tuple(tuple(int(c) for c in stage) for stage in getattr(self, name))
            object.__setattr__(self, name, stages)
        for name in ("concat_levels", "dilation"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        self._validate()

    def _validate(self) -> None:
        levels = len(self.encoder)
        problems = []
        if levels < 2 or any(len(stage) == 0 for stage in self.encoder + self.decoder):
            problems.append("encoder needs at least 2 stages and every stage at least one conv")
        if self.pools not in (levels, levels - 1):
            problems.append(f"decoder has {len(self.decoder)} blocks; expected {levels} or {levels - 1}")
        if self.upsample not in UPSAMPLE_KINDS:
            problems.append(f"upsample {self.upsample!r} is not one of {UPSAMPLE_KINDS}")
        if self.coords not in COORD_PLACES:
            problems.append(f"coords {self.coords!r} is not one of {COORD_PLACES}")
        if self.coords == "mid" and not 1 <= self.coord_level < levels:
            problems.append(f"coord_level {self.coord_level} must be in 1..{levels - 1}")
        if len(self.dilation) != levels or min(self.dilation, default=1) < 1:
            problems.append(f"dilation needs {levels} rates >= 1, got {self.dilation}")
        if any(not 0 <= level < self.pools for level in self.concat_levels):
            problems.append(f"concat_levels {self.concat_levels} must be in 0..{self.pools - 1}")
        if self.classifier_kernel < 1 or self.classifier_kernel % 2 == 0:
            problems.append(f"classifier_kernel must be odd and >= 1, got {self.classifier_kernel}")
        if self.width <= 0 or self.in_channels < 1 or self.num_classes < 1:
            problems.append("width, in_channels and num_classes must be positive")
        if problems:
            raise ValueError(f"invalid ModelConfig {self.name!r}: " + "; ".join(problems))

    @property
    def pools(self) -> int:
        return len(self.decoder)

    @property
    def stride(self) -> int:
        """Inputs are padded to a multiple of ``2 ** pools`` (32 for the SegNet family, 16 for U-Net)."""
        return 2**self.pools

    def channels(self, base: int) -> int:
        """``base`` scaled by ``width``: rounded, at least 1."""
        return max(1, round(base * self.width))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["encoder"] = [list(stage) for stage in self.encoder]
        data["decoder"] = [list(stage) for stage in self.decoder]
        data["concat_levels"] = list(self.concat_levels)
        data["dilation"] = list(self.dilation)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """The config of a model file, each field's type and range checked first (:func:`checked_config`)."""
        return cls(**checked_config(data, {f.name for f in dataclasses.fields(cls)}))


MAX_BASE_CHANNELS = 2048
MAX_WIDTH = 4.0


def checked_config(data: Any, names: set[str]) -> dict[str, Any]:
    """``data`` (a model file's JSON) with every field's type and range checked, one-line ``ValueError``
    otherwise: a width of 1e6 or a classifier kernel of 1e9 must fail here, not in a tensor allocation."""
    data = fields.known_fields("ModelConfig", data, names)
    checked: dict[str, Any] = {}
    for name, value in data.items():
        if name in ("encoder", "decoder"):
            if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= 8:
                raise ValueError(f"{name}: expected a list of 1 to 8 stages")
            checked[name] = tuple(
                fields.wholes(f"{name}[{i}]", stage, 1, MAX_BASE_CHANNELS, most=8, fewest=1)
                for i, stage in enumerate(value)
            )
        elif name in ("name", "upsample", "coords"):
            checked[name] = fields.text(name, value)
        elif name == "width":
            checked[name] = fields.number(name, value, 0.0, MAX_WIDTH, above_low=True)
        elif name in ("concat_levels", "dilation"):
            checked[name] = fields.wholes(name, value, 0 if name == "concat_levels" else 1, 16, most=8)
        else:
            low, high = {"coord_level": (0, 8), "classifier_kernel": (1, 15), "in_channels": (1, 16)}.get(
                name, (1, 256)
            )
            checked[name] = fields.whole(name, value, low, high)
    return checked


class DecoderBlock(nn.Module):
    """Up-sample to one level, optionally concatenate that level's encoder output, then conv blocks."""

    def __init__(self, up: nn.Module | None, convs: ConvStack, concat: bool) -> None:
        super().__init__()
        self.up = up
        self.convs = convs
        self.concat = concat

    def forward(
        self, x: torch.Tensor, indices: torch.Tensor | None, skip: torch.Tensor | None
    ) -> torch.Tensor:
        x = unpool_with_indices(x, indices) if self.up is None else self.up(x)
        if self.concat:
            x = torch.cat([x, skip], dim=1)
        return self.convs(x)


class EncoderDecoder(nn.Module):
    """The one network class; build it from a :class:`ModelConfig` (see the module docstring)."""

    def __init__(self, config: ModelConfig, init_weights: bool = True) -> None:
        """``init_weights=False`` leaves the tensors as created, for a model whose weights are loaded next
        (on the ``meta`` device, a random normal would import torch's compiler stack: over a second)."""
        super().__init__()
        self.config = config
        self.meta: dict[str, Any] = {}
        self.encoder = nn.ModuleList()
        encoder_out = self._build_encoder(config)
        self.decoder = nn.ModuleList()
        self.decoder_levels = tuple(range(config.pools - 1, -1, -1))
        channels = self._build_decoder(config, encoder_out)
        k = config.classifier_kernel
        self.classifier = nn.Conv2d(channels, config.num_classes, k, padding=k // 2, bias=True)
        if init_weights:
            self._init_weights()

    def _init_weights(self) -> None:
        """He-normal convs (fan-out, as torchvision's VGG), zero biases, unit BatchNorm: activations keep
        their scale through the 26 convs even before BatchNorm has running statistics."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _build_encoder(self, config: ModelConfig) -> list[int]:
        channels = config.in_channels + (COORD_CHANNELS if config.coords == "input" else 0)
        encoder_out = []
        for level, stage in enumerate(config.encoder):
            if config.coords == "mid" and level == config.coord_level:
                channels += COORD_CHANNELS
            widths = tuple(config.channels(c) for c in stage)
            self.encoder.append(ConvStack(channels, widths, config.dilation[level]))
            channels = widths[-1]
            encoder_out.append(channels)
        return encoder_out

    def _build_decoder(self, config: ModelConfig, encoder_out: list[int]) -> int:
        channels = encoder_out[config.pools - 1] if config.pools == len(encoder_out) else encoder_out[-1]
        for stage, level in zip(config.decoder, self.decoder_levels, strict=True):
            skip = encoder_out[level]
            if config.upsample == "transposed":
                up = TransposedUp(channels, skip)
                channels = skip
            else:
                up = None
                if channels != skip:
                    raise ValueError(
                        f"invalid ModelConfig {config.name!r}: unpool to level {level} gets {channels} "
                        f"channels but pool {level} has {skip}"
                    )
            concat = level in config.concat_levels
            widths = tuple(config.channels(c) for c in stage)
            in_channels = channels + (skip if concat else 0)
            convs = ConvStack(in_channels, widths, config.dilation[level])
            self.decoder.append(DecoderBlock(up, convs, concat))
            channels = widths[-1]
        return channels

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def forward(self, image: torch.Tensor, coords: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, num_classes, H, W)`` for an image batch ``(B, in_channels, H, W)`` of any size.

        ``coords`` ``(B, 2, H, W)`` are the photo's X/Y maps cut like the image (crops, flips, resizes);
        when None, maps for the whole input are built. Configs without coordinate maps ignore them.
        """
        height, width = image.shape[-2], image.shape[-1]
        stride = self.config.stride
        pad_bottom, pad_right = (-height) % stride, (-width) % stride
        x = F.pad(image, (0, pad_right, 0, pad_bottom), mode="replicate")
        maps = None
        if self.config.coords != "none":
            maps = self._padded_coords(image, coords, pad_bottom, pad_right)
        x, features, indices = self._encode(x, maps)
        for block, level in zip(self.decoder, self.decoder_levels, strict=True):
            x = block(x, indices[level], features[level])
        return self.classifier(x)[..., :height, :width]

    def _encode(
        self, x: torch.Tensor, maps: torch.Tensor | None
    ) -> tuple[torch.Tensor, list[torch.Tensor | None], list[torch.Tensor | None]]:
        """Run the encoder; returns the tensor the decoder starts from (last pool output or bottleneck),
        the feature maps of the concatenated levels (None elsewhere, so they can be freed early) and the
        pooling indices per level (None when the decoder does not unpool)."""
        config = self.config
        features: list[torch.Tensor | None] = []
        indices: list[torch.Tensor | None] = []
        for level, stage in enumerate(self.encoder):
            if maps is not None and config.coords == "input" and level == 0:
                x = torch.cat([x, maps], dim=1)
            if maps is not None and config.coords == "mid" and level == config.coord_level:
                step = 2**level
                x = torch.cat([x, maps[..., ::step, ::step]], dim=1)
            x = stage(x)
            features.append(x if level in config.concat_levels else None)
            if level < config.pools and config.upsample == "unpool":
                x, level_indices = pool_with_indices(x)
                indices.append(level_indices)
            elif level < config.pools:
                x = F.max_pool2d(x, kernel_size=2, stride=2)
                indices.append(None)
        return x, features, indices

    def _padded_coords(
        self, image: torch.Tensor, coords: torch.Tensor | None, pad_bottom: int, pad_right: int
    ) -> torch.Tensor:
        batch, height, width = image.shape[0], image.shape[-2], image.shape[-1]
        if coords is None:
            maps = coord_maps(
                height, width, height + pad_bottom, width + pad_right, device=image.device, dtype=image.dtype
            )
            return maps.unsqueeze(0).expand(batch, -1, -1, -1)
        if not (torch.compiler.is_compiling() or torch.compiler.is_exporting()):
            expected = (batch, COORD_CHANNELS, height, width)
            if tuple(coords.shape) != expected:
                raise ValueError(f"coords must have shape {expected}, got {tuple(coords.shape)}")
        return pad_coord_maps(coords.float(), pad_bottom, pad_right).to(image.dtype)
