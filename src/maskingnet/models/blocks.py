"""Building blocks of the encoder-decoder: conv-BN-ReLU stages, index-keeping pooling, the two kinds of
up-sampling, and the coordinate maps (whole-input maps and ramp-extending padding).

Everything here is traceable for ``torch.onnx.export(..., dynamo=True)``: no Python branching on tensor
values, and shape arithmetic only with sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNReLU(nn.Sequential):
    """``Conv2d(3x3, stride 1, padding=dilation, bias) -> BatchNorm2d -> ReLU``: keeps the spatial size."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=True)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)


class ConvStack(nn.Sequential):
    """Consecutive :class:`ConvBNReLU` blocks, all with the same dilation."""

    def __init__(self, in_channels: int, channels: tuple[int, ...], dilation: int = 1) -> None:
        super().__init__()
        for out_channels in channels:
            self.append(ConvBNReLU(in_channels, out_channels, dilation))
            in_channels = out_channels

    @property
    def out_channels(self) -> int:
        return self[-1].conv.out_channels


def pool_with_indices(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``MaxPool2d(2, 2)`` that also returns the arg-max indices for :func:`unpool_with_indices`."""
    return F.max_pool2d(x, kernel_size=2, stride=2, return_indices=True)


def unpool_with_indices(x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """SegNet's up-sampling: put every value back where the encoder's max came from (zeros elsewhere).

    Doubles height and width: the model pads its input so that every pooled size is exact.
    """
    return F.max_unpool2d(x, indices, kernel_size=2, stride=2)


class TransposedUp(nn.ConvTranspose2d):
    """U-Net's up-sampling: ``ConvTranspose2d(kernel 2, stride 2, bias)`` doubles height and width."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=2, stride=2, bias=True)


def coord_maps(
    height: int,
    width: int,
    padded_height: int | None = None,
    padded_width: int | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Whole-input coordinate maps ``(2, padded_height, padded_width)``, channels ``[X, Y]``.

    ``X[i, j] = j / width - 0.5`` and ``Y[i, j] = i / height - 0.5``; rows/columns past ``height``/``width``
    (the model's padding) continue the same ramp.
    """
    padded_height = height if padded_height is None else padded_height
    padded_width = width if padded_width is None else padded_width
    xs = torch.arange(padded_width, device=device, dtype=torch.float32) / width - 0.5
    ys = torch.arange(padded_height, device=device, dtype=torch.float32) / height - 0.5
    x_map = xs.view(1, padded_width).expand(padded_height, padded_width)
    y_map = ys.view(padded_height, 1).expand(padded_height, padded_width)
    return torch.stack([x_map, y_map]).to(dtype)


def extend_ramp(maps: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    """Append ``pad`` slices along ``dim`` that continue ``maps`` linearly (its mean slope along ``dim``).

    Coordinate maps of a crop, resize or flip are linear ramps, so this is exactly the maps of the larger
    window; a single slice (no slope) is repeated.
    """
    size = maps.shape[dim]
    first = maps.narrow(dim, 0, 1)
    last = maps.narrow(dim, size - 1, 1)
    slope = (last - first) / max(size - 1, 1)
    steps_shape = [1] * maps.dim()
    steps_shape[dim] = pad
    steps = torch.arange(1, pad + 1, device=maps.device, dtype=maps.dtype).view(steps_shape)
    return torch.cat([maps, last + steps * slope], dim=dim)


def pad_coord_maps(coords: torch.Tensor, pad_bottom: int, pad_right: int) -> torch.Tensor:
    """Pad ``(B, 2, H, W)`` coordinate maps on the bottom and right by extending their ramps."""
    return extend_ramp(extend_ramp(coords, pad_right, dim=-1), pad_bottom, dim=-2)
