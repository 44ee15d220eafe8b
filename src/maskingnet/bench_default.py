"""``maskingnet bench``'s default-model section: what a shop's photo costs with the model in the box.

Three pipelines run ``predict`` (decode, network, up-sampling or edge stage, mask written) on the same real
1918x1280 photos, in turns, best of two:

- ``previous``: the earlier recipe's network, MaskingNet width 0.25 at 240x160, bilinear up-sampling (timed
  untrained: the cost of a network does not depend on its weights);
- ``default, plain``: the bundled model, bilinear up-sampling, no clean-up;
- ``default``: the bundled model with its edge stage and clean-up, as ``maskingnet predict`` runs it.

The ratios ``default`` / ``previous`` and ``default`` / ``default, plain`` come from the same run.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from maskingnet.inference import TorchBackend
from maskingnet.models import create_model, load_model, resolve_model
from maskingnet.predict import PredictConfig, predict_files

PREVIOUS_SIZE = (240, 160)


def _previous_network() -> TorchBackend:
    torch.manual_seed(0)
    model = create_model("maskingnet", width=0.25).eval()
    model.meta = {"input_size": list(PREVIOUS_SIZE)}
    return TorchBackend(model, device="cpu", precision="auto")


def _seconds_per_photo(checkpoint: Any, paths: Sequence[Path], refine: bool, clean: bool, size=None) -> float:
    with tempfile.TemporaryDirectory(prefix="maskingnet-bench-") as tmp:
        config = PredictConfig(
            checkpoint=checkpoint, inputs=[str(p) for p in paths], out=Path(tmp), save=("mask",), size=size,
            refine=refine, clean=clean, progress=False, device="cpu",
        )
        summary = predict_files(config, lambda line: None)
    return summary.seconds / max(summary.done, 1)


def bench_default_model(
    paths: Sequence[Path], model: Path | None = None, say: Callable[[str], None] = print, rounds: int = 2
) -> dict[str, Any]:
    """Seconds per photo of the three pipelines (module docstring) on ``paths``, best of ``rounds``."""
    if not paths:
        return {"images": 0, "note": "no real photos given (--data)"}
    model = resolve_model(model)
    bundled = load_model(model)
    previous = _previous_network()
    runs: dict[str, Callable[[], float]] = {
        "previous": lambda: _seconds_per_photo(previous, paths, False, False, PREVIOUS_SIZE),
        "default_plain": lambda: _seconds_per_photo(model, paths, False, False),
        "default": lambda: _seconds_per_photo(model, paths, True, True),
    }
    _seconds_per_photo(model, paths[:1], True, True)  # warm-up
    best: dict[str, float] = {}
    for round_ in range(rounds):
        for name, run in runs.items():
            say(f"default model: {name}, round {round_ + 1}/{rounds}")
            best[name] = min(best.get(name, float("inf")), run())
    return {
        "images": len(paths),
        "model": f"{model.name} ({bundled.config.name} width {bundled.config.width:g}, "
        f"input {bundled.meta.get('input_size')})",
        "seconds_per_photo": {name: round(value, 4) for name, value in best.items()},
        "default_vs_previous": round(best["default"] / best["previous"], 2),
        "edge_stage_share": round((best["default"] - best["default_plain"]) / best["default"], 3),
    }


def default_model_markdown(section: dict[str, Any] | None) -> list[str]:
    """The section as a Markdown table (nothing when it did not run)."""
    if not section or not section.get("images"):
        return []
    seconds = section["seconds_per_photo"]
    return [
        f"## The default model, end to end ({section['images']} real 1918x1280 JPEGs, masks written)",
        "",
        f"Model: {section['model']}.",
        "",
        "| pipeline | s/photo |",
        "|---|---:|",
        f"| previous recipe: width 0.25 at 240x160, bilinear | {seconds['previous']:.3f} |",
        f"| default model, bilinear, no clean-up | {seconds['default_plain']:.3f} |",
        f"| **default model with edge stage and clean-up** | **{seconds['default']:.3f}** |",
        "",
        f"Default / previous: {section['default_vs_previous']:.2f}x the time per photo; the edge stage and "
        f"clean-up are {100 * section['edge_stage_share']:.0f}% of the default pipeline's time.",
        "",
    ]
