"""The edge refiner: a small network that places the outline from the photo at high resolution.

The segmentation network sees the photo at a fraction of its size (480x320 for a 1918x1280 Carvana photo),
so its outline is only as precise as those pixels, and a mirror or an antenna a few model pixels wide is
rounded off. The refiner looks at the photo at a higher scale (``RefinerConfig.scale`` of the full size,
the whole resolution by default) together with the network's up-sampled probability, and predicts a
correction of the probability's logit. It runs only on tiles along the predicted outline (see
:mod:`maskingnet.inference.edges`), so its cost grows with the outline's length, not the photo's area.

Architecture: two 3x3 convolutions at the working scale (fine detail), a half-scale branch with dilated
convolutions (a context of about 30 working pixels), the two joined and reduced to one correction logit:
about 4,000 multiply-adds per pixel at 8 channels, on the outline's tiles only.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from maskingnet.utils import parse_json

from . import fields
from .fields import known_fields

REFINER_KEY = "maskingnet.refiner"
REFINER_RANGES = {
    "channels": (1, 32),
    "scale": (1 / 16, 1.0),
    "tile": (8, 256),
    "margin": (0, 64),
    "band": (1, 64),
}
"""Allowed range of each refiner setting: a tile holds at most (256 + 2 * 64)^2 pixels, and the margin is
at most the tile, so the context at most multiplies the work by 9 (by 2.25 at the defaults)."""
TENSOR_PREFIX = "refiner."
_PROB_EPS = 1e-4


@dataclass(frozen=True)
class RefinerConfig:
    """The refiner's shape and how it is applied (stored in the model file beside the network's config).

    ``scale``: working resolution as a fraction of the full photo. ``tile``: output tile side at that scale;
    ``margin``: context added around each tile. ``band``: working pixels either side of the coarse outline
    that the refiner may change (everything farther keeps the network's up-sampled probability).
    """

    channels: int = 8
    scale: float = 1.0
    tile: int = 64
    margin: int = 16
    band: int = 12

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RefinerConfig:
        """The settings of a model file, each checked against :data:`REFINER_RANGES` (one-line
        ``ValueError``): a tile or margin past them costs memory and time out of proportion to a photo."""
        values = known_fields("refiner settings", values, {f.name for f in dataclasses.fields(cls)})
        checked: dict[str, Any] = {}
        for name, (low, high) in REFINER_RANGES.items():
            if name in values:
                read = fields.number if name == "scale" else fields.whole
                checked[name] = read(f"refiner {name}", values[name], low, high)
        config = cls(**checked)
        if config.margin > config.tile:
            raise ValueError(f"refiner margin {config.margin}: at most the tile ({config.tile})")
        return config

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def _conv(cin: int, cout: int, dilation: int = 1, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation), nn.ReLU(inplace=True)
    )


class Refiner(nn.Module):
    """``refiner(images (B,3,H,W) normalised, probs (B,1,H,W)) -> refined logits (B,1,H,W)``.

    The output is ``logit(probs) + correction``: where the refiner has nothing to add, it returns the
    network's own answer, which is what it is initialised to do (the last layer starts at zero).
    """

    def __init__(self, config: RefinerConfig = RefinerConfig()) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.fine = nn.Sequential(_conv(4, c), _conv(c, c))
        self.context = nn.Sequential(_conv(4, 2 * c), _conv(2 * c, 2 * c, 2), _conv(2 * c, 2 * c, 4))
        self.join = _conv(3 * c, c)
        self.head = nn.Conv2d(c, 1, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, images: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        probs = probs.clamp(_PROB_EPS, 1 - _PROB_EPS)
        inputs = torch.cat([images, probs * 2 - 1], dim=1)
        fine = self.fine(inputs)
        context = self.context(F.avg_pool2d(inputs, 2, ceil_mode=True))
        context = F.interpolate(context, size=fine.shape[-2:], mode="bilinear", align_corners=False)
        correction = self.head(self.join(torch.cat([fine, context], dim=1)))
        return torch.logit(probs) + correction


def refiner_tensors(refiner: Refiner) -> dict[str, torch.Tensor]:
    """The refiner's weights under the names they have inside a model file."""
    return {TENSOR_PREFIX + k: v.detach().cpu().contiguous() for k, v in refiner.state_dict().items()}


def refiner_to_bytes(refiner: Refiner) -> bytes:
    """The refiner's weights as safetensors bytes (how an ONNX file carries it in its metadata)."""
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous() for k, v in refiner.state_dict().items()})


def refiner_from_bytes(config_json: str, data: bytes) -> Refiner:
    """A refiner rebuilt from :meth:`RefinerConfig.to_json` and :func:`refiner_to_bytes` output.

    Raises ValueError when the settings or the tensors do not fit (never unpickles anything).
    """
    from safetensors.torch import load

    refiner = Refiner(RefinerConfig.from_dict(parse_json(config_json)))
    try:
        tensors = load(data)
    except Exception as err:
        raise ValueError(f"refiner weights are not valid safetensors ({err})") from err
    expected = refiner.state_dict()
    if set(tensors) != set(expected) or any(tensors[k].shape != expected[k].shape for k in expected):
        raise ValueError("refiner weights do not fit its settings")
    refiner.load_state_dict(tensors, strict=True)
    return refiner.to(memory_format=torch.channels_last).eval()
