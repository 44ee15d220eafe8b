"""Building blocks of the encoder-decoder: conv-BN-ReLU stages, index-keeping pooling and the two kinds of
up-sampling (the coordinate maps live in :mod:`maskingnet.data.coords`).

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

    Doubles height and width: the model pads its input so that every pooled size is exact. The aten op is
    called directly: ``F.max_unpool2d``'s size check imports torch's symbolic-shape machinery (sympy, about
    a second of every command's start) on its first call.
    """
    return torch.ops.aten.max_unpool2d(x, indices, [2 * x.shape[-2], 2 * x.shape[-1]])


class TransposedUp(nn.ConvTranspose2d):
    """U-Net's up-sampling: ``ConvTranspose2d(kernel 2, stride 2, bias)`` doubles height and width."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=2, stride=2, bias=True)
