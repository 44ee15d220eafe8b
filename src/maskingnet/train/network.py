"""The network a run trains: built from the settings, with its first weights (seeded at random, from
``--init-from`` or from ``--vgg-weights``), and the edge refiner a fine-tuned run carries on."""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import nn

from maskingnet.models import (
    CheckpointError,
    create_model,
    load_model,
    load_spec,
    load_vgg_weights,
    read_config,
    resolve_model,
)
from maskingnet.models.checkpoint import load_refiner
from maskingnet.models.refiner import Refiner
from maskingnet.runtime import DistContext

from .config import TrainConfig, TrainError


def build_model(config: TrainConfig, device: torch.device) -> nn.Module:
    """The network of ``config`` on ``device``, its random weights drawn from ``config.seed``."""
    torch.manual_seed(config.seed)
    model = create_model(config.model, width=config.width, **config.model_options).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def describe_config(config: Any) -> str:
    """``maskingnet width 0.25``: what a model file holds, in words."""
    return f"{config.name} width {config.width:g}"


def init_from_defaults(init_from: str) -> dict[str, Any]:
    """Model, width and input size of the ``--init-from`` model: a fine-tuning run's defaults."""
    try:
        path = resolve_model(init_from)
        config, _ = read_config(path)
        size = load_spec(path).size
    except CheckpointError as error:
        raise TrainError(f"--init-from: {error}") from None
    defaults: dict[str, Any] = {"model": config.name, "width": config.width}
    if size:
        defaults["size"] = size
    return defaults


def load_init_weights(model: nn.Module, init_from: str) -> None:
    """Start from the weights of ``--init-from`` (fine-tuning); another architecture is refused."""
    try:
        source = load_model(resolve_model(init_from))
    except CheckpointError as error:
        raise TrainError(f"--init-from: {error}") from None
    built = model.config
    if source.config != built:
        raise TrainError(
            f"--init-from {init_from}: it is {describe_config(source.config)}, this run "
            f"builds {describe_config(built)}; give the same --model and --width (or leave them out)"
        )
    model.load_state_dict(source.state_dict())


def carried_refiner(init_from: str) -> Refiner | None:
    """The edge refiner of the ``--init-from`` model (None if it has none): fine-tuned files carry it on."""
    try:
        return load_refiner(resolve_model(init_from))
    except CheckpointError as error:
        raise TrainError(f"--init-from: {error}") from None


def load_vgg(model: nn.Module, path: str, announce: bool) -> None:
    """Copy VGG-16 weights from the local file ``path`` onto the first encoder convs that fit."""
    loaded = load_vgg_weights(model, path)
    if announce:
        print(f"VGG weights from {path}: {len(loaded)} layers ({', '.join(loaded)})", file=sys.stderr)


def wrap_for_training(model: nn.Module, ctx: DistContext, device: torch.device, compile: bool) -> nn.Module:
    """``model`` as the training steps call it: in DistributedDataParallel under torchrun, compiled on
    request. Checkpoints are written from ``model`` itself."""
    net = model
    if ctx.enabled:
        device_ids = [device.index] if device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(net, device_ids=device_ids)
    if compile:
        net = torch.compile(net)
    return net
