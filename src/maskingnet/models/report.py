"""Parameters and FLOPs of a model, counted with ``torch.utils.flop_counter`` (FLOPs = 2 x MACs).

The count runs on the ``meta`` device (shapes only, no arithmetic), so reporting a full-width model at
512x512 takes a fraction of a second on any machine.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .encoder_decoder import EncoderDecoder, ModelConfig
from .registry import PAPER_PARAMS, create_model, list_models


def model_report(
    model_or_name: nn.Module | str, size: tuple[int, int] = (512, 512), batch: int = 1
) -> dict[str, Any]:
    """``params`` (trainable parameter count), ``gflops`` (one forward pass of ``batch`` images of
    ``size=(W, H)``), ``flops_by_op`` and the model's switches (``name``, ``upsample``, ``coords``, ...)."""
    model = _meta_copy(model_or_name)
    width, height = size
    in_channels = model.config.in_channels if isinstance(model, EncoderDecoder) else 3
    image = torch.empty(batch, in_channels, height, width, device="meta")
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(image)
    flops = counter.get_total_flops()
    report: dict[str, Any] = {
        "params": sum(p.numel() for p in model.parameters()),
        "gflops": flops / 1e9,
        "flops_by_op": {str(op): count for op, count in counter.get_flop_counts().get("Global", {}).items()},
        "size": [width, height],
        "batch": batch,
    }
    if isinstance(model, EncoderDecoder):
        report.update(switches(model.config))
        report["params_by_stage"] = params_by_stage(model)
    return report


def params_by_stage(model: EncoderDecoder) -> dict[str, int]:
    """Parameters per stage, named by level as in ARCHITECTURES.md's SegNet tables: ``enc1`` .. ``enc5``
    (encoder stage at 1/1 .. 1/16), ``dec5`` .. ``dec1`` (decoder block ending at that scale, including a
    transposed-conv up-sampling), ``classifier``."""

    def count(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    stages = {f"enc{level + 1}": count(stage) for level, stage in enumerate(model.encoder)}
    for block, level in zip(model.decoder, model.decoder_levels, strict=True):
        stages[f"dec{level + 1}"] = count(block)
    stages["classifier"] = count(model.classifier)
    return stages


def switches(config: ModelConfig) -> dict[str, Any]:
    """The ablation columns of the thesis's table for one config."""
    return {
        "name": config.name,
        "upsample": config.upsample,
        "pool_indices": config.upsample == "unpool",
        "concat_levels": list(config.concat_levels),
        "coords": config.coords,
        "dilation": list(config.dilation),
        "width": config.width,
    }


def _meta_copy(model_or_name: nn.Module | str) -> nn.Module:
    """The model rebuilt on the meta device (from its config when it has one)."""
    if isinstance(model_or_name, str):
        with torch.device("meta"):
            return create_model(model_or_name).eval()
    config = getattr(model_or_name, "config", None)
    if isinstance(config, ModelConfig):
        with torch.device("meta"):
            return EncoderDecoder(config).eval()
    return copy.deepcopy(model_or_name).to("meta").eval()


def models_table(
    names: list[str] | None = None, size: tuple[int, int] = (512, 512), width: float = 1.0
) -> list[dict[str, Any]]:
    """:func:`model_report` for several registry models (all six by default) at one size and width."""
    rows = []
    for name in names or list_models():
        with torch.device("meta"):
            model = create_model(name, width=width)
        row = model_report(model, size=size)
        row["paper_params"] = PAPER_PARAMS.get(name) if width == 1.0 else None
        rows.append(row)
    return rows


def count_params(config: ModelConfig | None) -> int | None:
    """Parameter count of the network ``config`` describes (built on the meta device: no memory)."""
    if config is None:
        return None
    with torch.device("meta"):
        model = EncoderDecoder(config)
    return sum(parameter.numel() for parameter in model.parameters())
