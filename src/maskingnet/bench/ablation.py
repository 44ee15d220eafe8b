"""``maskingnet ablation``: the thesis's ablation table, reproduced at a chosen budget.

Trains the six networks on the same split, seed and budget (``maskingnet.train.train``), evaluates each
one's best checkpoint at the photos' full resolution (``maskingnet.evaluate.evaluate``), times a training
step and a forward pass at the training size, and writes into ``OUT``:

- ``ablation.json``: one row per network (DSC, 1-DSC, 1-DSC in pixels per image, the switches, params,
  train and test ms/image) and the settings;
- ``ablation.md``: the table as Markdown, beside the thesis's figures, with the two orderings;
- ``ablation.png``: a bar chart of 1-DSC per network, ours beside the thesis's.

The three files are rewritten after each network, so an interrupted run still leaves the table so far.

Every network trains in ``OUT/<name>/`` (a normal run folder). Re-running continues: networks whose row is
already written are not trained again, and an interrupted training resumes.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

import maskingnet.train as training
from maskingnet.bench.networks import round_robin_ms, test_pass, training_step
from maskingnet.bench.timing import Plan
from maskingnet.evaluate import evaluate
from maskingnet.inference import ModelSettings, resolve_device
from maskingnet.models import create_model, list_models, model_report
from maskingnet.utils import atomic_save, atomic_write, write_json

MODEL_NAMES = tuple(list_models())
ROW_FILE = "ablation_row.json"

# The thesis's table: DSC on the test set (NVIDIA 1080Ti, 512x512, 250 epochs, 4071/1017 split).
THESIS_DSC = {
    "unet": 0.995604,
    "segnet": 0.996092,
    "arc1": 0.996932,
    "arc2": 0.996870,
    "arc3": 0.996937,
    "maskingnet": 0.997023,
}
LABELS = {
    "unet": "U-Net",
    "segnet": "SegNet",
    "arc1": "Arc. #1",
    "arc2": "Arc. #2",
    "arc3": "Arc. #3",
    "maskingnet": "MaskingNet",
}


@dataclass
class AblationConfig:
    """The shared budget: every network gets the same data, split, seed, size, width, epochs and batch."""

    data: Path
    out: Path = Path("runs/ablation")
    models: tuple[str, ...] = MODEL_NAMES
    epochs: int = 3
    size: tuple[int, int] = (256, 171)
    width: float = 0.25
    seed: int = 0
    batch_size: int = 4
    lr: float = 1e-3
    val_fraction: float = 0.2
    max_steps: int | None = None
    threads: int | None = None
    workers: int | None = None
    device: str = "auto"
    timing_repeats: int = 3
    # Small networks on a shared machine time erratically on several threads (they wait for each other at
    # every op); one thread gives stable ratios. None: torch's default.
    timing_threads: int | None = 1
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data, self.out = Path(self.data), Path(self.out)
        self.size = (int(self.size[0]), int(self.size[1]))
        unknown = [name for name in self.models if name not in MODEL_NAMES]
        if unknown:
            raise ValueError(f"unknown models: {', '.join(unknown)} (choose from {', '.join(MODEL_NAMES)})")
        if self.epochs < 1 or self.batch_size < 1 or self.width <= 0:
            raise ValueError("epochs and batch size must be >= 1 and width > 0")


def train_config(config: AblationConfig, name: str):
    """The training run of one network: identical for all six but for the model name."""
    return training.TrainConfig(
        data=str(config.data),
        out=str(config.out / name),
        model=name,
        width=config.width,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        size=config.size,
        seed=config.seed,
        val_fraction=config.val_fraction,
        max_steps=config.max_steps,
        threads=config.threads,
        workers=config.workers,
        device=config.device,
        resume=(config.out / name / "checkpoints").is_dir(),
        progress=config.progress,
    )


def time_models(config: AblationConfig, say: Callable[[str], None]) -> dict[str, tuple[float, float]]:
    """(train, test) ms/image of every network at the training size and batch, fp32, timed in turns
    (``maskingnet.bench.round_robin_ms``) so that load from other work falls on all of them alike."""
    device = resolve_device(config.device)
    plan = Plan(device=device, size=config.size, batch=config.batch_size, repeats=config.timing_repeats)
    models = {}
    for name in config.models:
        torch.manual_seed(config.seed)
        models[name] = create_model(name, width=config.width).to(device)
    say = functools.partial(_prefixed, say)
    threads = torch.get_num_threads()
    if config.timing_threads:
        torch.set_num_threads(config.timing_threads)
    try:
        train = round_robin_ms({name: training_step(m, plan) for name, m in models.items()}, plan, say)
        test = round_robin_ms({name: test_pass(m, plan) for name, m in models.items()}, plan, say)
    finally:
        torch.set_num_threads(threads)
    return {name: (train[name], test[name]) for name in models}


def _prefixed(say: Callable[[str], None], line: str) -> None:
    say(f"timing: {line}")


def run_one(config: AblationConfig, name: str, say: Callable[[str], None]) -> dict[str, Any]:
    """Train, evaluate and time one network; the row is saved so that a re-run skips it."""
    row_path = config.out / name / ROW_FILE
    if row_path.is_file():
        say(f"{name}: already done ({row_path})")
        return json.loads(row_path.read_text())
    started = time.perf_counter()
    say(f"{name}: training {config.epochs} epochs at {config.size[0]}x{config.size[1]}, width {config.width}")
    summary = training.train(train_config(config, name))
    train_seconds = time.perf_counter() - started
    say(f"{name}: evaluating {summary['best_checkpoint']} at full resolution")
    scores = evaluate(
        ModelSettings(summary["best_checkpoint"], device=config.device),
        config.data,
        split="val",
        out=config.out / name / "eval",
        workers=config.workers,
        progress=config.progress,
    )
    report = model_report(name, size=(512, 512))
    row = {
        "name": name,
        "label": LABELS[name],
        "dsc": scores["mean_dice"],
        "one_minus_dsc": 1 - scores["mean_dice"],
        "one_minus_dsc_pixels_per_image": scores["one_minus_dice_pixels_per_image"],
        "min_dice": scores["min_dice"],
        "val_images": scores["images"],
        "pool_indices": report["pool_indices"],
        "coords": report["coords"],
        "dilated": any(rate > 1 for rate in report["dilation"]),
        "params": scores["params"],
        "params_full_width": report["params"],
        "best_epoch": summary.get("best_epoch"),
        "train_seconds": train_seconds,
        "thesis_dsc": THESIS_DSC[name],
    }
    with atomic_write(row_path, "w") as handle:
        json.dump(row, handle, indent=2)
    return row


def run_ablation(config: AblationConfig, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every network of ``config.models``; write ablation.json, ablation.md and ablation.png."""
    started = time.perf_counter()
    result: dict[str, Any] = {
        "command": config.extra.get("command", "maskingnet ablation"),
        "settings": _settings(config),
        "rows": [],
    }
    for name in config.models:
        result["rows"].append(run_one(config, name, say))
        result["seconds"] = time.perf_counter() - started
        write_outputs(result, config.out)
    timings = time_models(config, say)
    for row in result["rows"]:
        row["train_ms_per_image"], row["test_ms_per_image"] = timings[row["name"]]
    result["seconds"] = time.perf_counter() - started
    write_outputs(result, config.out)
    return result


def _settings(config: AblationConfig) -> dict[str, Any]:
    settings = asdict(config)
    settings.pop("extra")
    settings["data"], settings["out"] = str(config.data), str(config.out)
    settings["models"] = list(config.models)
    settings["size"] = list(config.size)
    return settings


def write_outputs(result: dict[str, Any], out: Path) -> None:

    write_json(out / "ablation.json", result)
    with atomic_write(out / "ablation.md", "w") as handle:
        handle.write(format_table(result))
    atomic_save(out / "ablation.png", lambda tmp: plot_bars(result["rows"], tmp))


def ordering(rows: list[dict[str, Any]], key: str) -> list[str]:
    """Networks from best to worst by ``key`` (a DSC column: higher is better)."""
    return [row["label"] for row in sorted(rows, key=lambda row: row[key], reverse=True)]


def format_table(result: dict[str, Any]) -> str:
    """The thesis's table (DSC, 1-DSC, switches, params, train and test ms/image) as Markdown."""
    rows, settings = result["rows"], result["settings"]
    size = settings["size"]
    lines = [
        f"Command: `{result['command']}`",
        "",
        f"Budget for every network: {settings['epochs']} epochs, {size[0]}x{size[1]}, "
        f"width {settings['width']}, "
        f"batch {settings['batch_size']}, Adam lr {settings['lr']}, seed {settings['seed']}, "
        f"validation = {int(settings['val_fraction'] * 100)}% of the cars. "
        "DSC at the photos' full resolution.",
        "",
        "| Model | DSC (val) | 1-DSC | 1-DSC px/image | Max pool. indices | Coord. maps | Dilated conv. "
        "| #Parameters | Train ms/image | Test ms/image | thesis DSC |",
        "|---|---:|---:|---:|:-:|:-:|:-:|---:|---:|---:|---:|",
    ]
    for row in rows:
        coords = {"none": "", "input": "Input layer", "mid": "Mid-layer"}.get(row["coords"], row["coords"])
        lines.append(
            f"| {row['label']} | {row['dsc'] * 100:.4f}% | {row['one_minus_dsc'] * 100:.4f}% "
            f"| {row['one_minus_dsc_pixels_per_image']:,.0f} "
            f"| {'✓' if row['pool_indices'] else ''} | {coords} "
            f"| {'✓' if row['dilated'] else ''} | {row['params']:,} | {_ms(row.get('train_ms_per_image'))} "
            f"| {_ms(row.get('test_ms_per_image'))} | {row['thesis_dsc'] * 100:.4f}% |"
        )
    lines += [
        "",
        f"Ordering here (best first): {' > '.join(ordering(rows, 'dsc'))}.",
        "",
        f"Ordering in the thesis: {' > '.join(ordering(rows, 'thesis_dsc'))}.",
        "",
        "#Parameters are at the width trained; at width 1 they are the thesis's (31,043,586 ... 32,808,770). "
        "Train/test ms/image: fp32, batch as trained, this machine, best of "
        f"{settings['timing_repeats']} runs, the six timed in turns after training"
        + (f", {settings['timing_threads']} torch thread(s)." if settings.get("timing_threads") else "."),
        "",
    ]
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def plot_bars(rows: list[dict[str, Any]], path: Path) -> None:
    """1-DSC per network: this run beside the thesis (percent of pixels, lower is better)."""
    labels = [row["label"] for row in rows]
    ours = [row["one_minus_dsc"] * 100 for row in rows]
    thesis = [(1 - row["thesis_dsc"]) * 100 for row in rows]
    x = np.arange(len(rows))
    figure = Figure(figsize=(11, 4))
    axes = figure.subplots(1, 2)
    axes[0].bar(x, ours, color="tab:blue")
    axes[0].set_title("This run: 1-DSC (%), validation, full resolution")
    axes[1].bar(x, thesis, color="tab:gray")
    axes[1].set_title("Thesis: 1-DSC (%), test set")
    for axis in axes:
        axis.set_xticks(x, labels, rotation=20)
        axis.set_ylabel("1-DSC (%)  lower is better")
    figure.tight_layout()
    figure.savefig(path, dpi=110, format="png")
