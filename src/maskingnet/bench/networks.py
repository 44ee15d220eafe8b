"""The six networks side by side: parameters, GFLOPs, training and test milliseconds per image, each as a
ratio to U-Net beside the thesis's 1080Ti ratio."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from maskingnet.bench.timing import BenchConfig, Plan, best_seconds, say
from maskingnet.models import (
    create_model,
    model_report,
)

# The thesis's table (NVIDIA 1080Ti, cuDNN v7, batch 4 at 512x512): training and test ms/image.
THESIS_MS = {
    "unet": (137.6, 34.42),
    "segnet": (165.13, 30.50),
    "arc1": (171.75, 42.793),
    "arc2": (172.59, 42.901),
    "arc3": (170.50, 42.839),
    "maskingnet": (180.46, 46.609),
}


def _batch(
    batch: int, size: int | tuple[int, int], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images and targets; ``size`` is a side or ``(W, H)``."""
    width, height = (size, size) if isinstance(size, int) else size
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, height, width, generator=generator).to(device)
    targets = torch.randint(0, 2, (batch, height, width), generator=generator).to(device)
    return images, targets


def training_step(model: nn.Module, plan: Plan) -> Callable[[], None]:
    """One training step: forward, pixel-wise softmax cross-entropy, backward, Adam (fp32)."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999))
    images, targets = _batch(plan.batch, plan.size, plan.device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), targets).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def test_pass(model: nn.Module, plan: Plan) -> Callable[[], None]:
    """The plain eval-mode fp32 forward pass (the thesis's test column)."""
    images, _ = _batch(plan.batch, plan.size, plan.device)

    def forward() -> None:
        model.eval()
        with torch.inference_mode():
            model(images)

    return forward


def time_training(model: nn.Module, plan: Plan) -> float:
    """ms per image of one training step (best of ``plan.repeats``)."""
    return best_seconds(training_step(model, plan), plan.device, plan.repeats) * 1000 / plan.batch


def time_testing(model: nn.Module, plan: Plan) -> float:
    """ms per image of the eval-mode forward pass (best of ``plan.repeats``)."""
    return best_seconds(test_pass(model, plan), plan.device, plan.repeats) * 1000 / plan.batch


def round_robin_ms(tasks: dict[str, Callable[[], None]], plan: Plan, say: Callable[[str], None]) -> dict:
    """Best ms per image of each task, timed in turns (one run of each, ``plan.repeats`` rounds) so that
    load from other work on the machine falls on all of them alike rather than on whichever ran then."""
    best = {name: float("inf") for name in tasks}
    for name, task in tasks.items():
        say(f"models: warm-up {name}")
        best_seconds(task, plan.device, 0, warmup=1)
    for round_index in range(plan.repeats):
        say(f"models: round {round_index + 1}/{plan.repeats}")
        for name, task in tasks.items():
            best[name] = min(best[name], best_seconds(task, plan.device, 1, warmup=0))
    return {name: seconds * 1000 / plan.batch for name, seconds in best.items()}


def bench_models(config: BenchConfig, plan: Plan) -> list[dict[str, Any]]:
    say(config, f"models: {', '.join(config.models)} at {plan.size}x{plan.size}, batch {plan.batch}")
    models, rows = {}, []
    for name in config.models:
        torch.manual_seed(0)
        models[name] = create_model(name, width=config.width).to(plan.device)
        report = model_report(models[name], size=(512, 512))
        rows.append(
            {"name": name, "params": int(report["params"]), "gflops": round(float(report["gflops"]), 2)}
        )
    progress = functools.partial(say, config)
    train = round_robin_ms({name: training_step(m, plan) for name, m in models.items()}, plan, progress)
    test = round_robin_ms({name: test_pass(m, plan) for name, m in models.items()}, plan, progress)
    for row in rows:
        row["train_ms_per_image"] = round(train[row["name"]], 2)
        row["test_ms_per_image"] = round(test[row["name"]], 2)
    add_thesis_ratios(rows)
    return rows


def add_thesis_ratios(rows: list[dict[str, Any]]) -> None:
    """Each timing as a ratio to U-Net's, beside the thesis's 1080Ti figures and their ratio to U-Net."""
    unet = next((row for row in rows if row["name"] == "unet"), None)
    thesis_unet = THESIS_MS["unet"]
    for row in rows:
        thesis = THESIS_MS.get(row["name"])
        for column, index in (("train", 0), ("test", 1)):
            ours = row[f"{column}_ms_per_image"]
            row[f"{column}_ratio_to_unet"] = round(ours / unet[f"{column}_ms_per_image"], 3) if unet else None
            row[f"thesis_{column}_ms"] = thesis[index] if thesis else None
            row[f"thesis_{column}_ratio_to_unet"] = (
                round(thesis[index] / thesis_unet[index], 3) if thesis else None
            )
