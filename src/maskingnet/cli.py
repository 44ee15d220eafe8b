"""The ``maskingnet`` command line. Thin: every verb parses options and calls one library function.

Library modules are imported inside each verb so that ``maskingnet --help`` answers instantly. Options that
several verbs share are defined once below (the model-running group, the decoding and output options);
``train``'s options are one group too, arriving as one ``TrainConfig``. Errors follow one policy
(:mod:`maskingnet.errors`): a problem the user can fix is one line ``verb: what is wrong`` on stderr and
exit status 1; a command line that cannot be parsed exits 2.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from maskingnet import __version__
from maskingnet.errors import EXIT_FAILED, MaskingnetError
from maskingnet.train.config import LOSSES, PRECISIONS, TrainConfig
from maskingnet.utils.interrupts import leave_on_signals
from maskingnet.utils.messages import one_line

ABOUT = "Cut cars out of photographs: MaskingNet, U-Net, SegNet and Arc. #1-#3 on Carvana-format data."

app = typer.Typer(
    name="maskingnet",
    help=ABOUT,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: "[ce]" and "[default: auto]" are text, not markup
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 80},
)

F = TypeVar("F", bound=Callable[..., Any])

# ----------------------------------------------------------------------------- options shared by verbs
# Running a model: evaluate, predict, submit, serve.
ModelFile = Annotated[
    str | None,
    typer.Option(
        "-m",
        "--model",
        metavar="NAME_OR_PATH",
        help="A bundled model (see 'maskingnet models'), a .safetensors checkpoint or an exported .onnx "
        "[maskingnet-carvana].",
    ),
]
Refine = Annotated[
    bool,
    typer.Option(
        help="Place the outline from the photo itself: the model's edge "
        "refiner, or the guided filter when it has none."
    ),
]
Guided = Annotated[
    bool,
    typer.Option(
        help="Place the outline with the generic guided filter even when the "
        "model has a refiner (photos unlike its training studio)."
    ),
]
Clean = Annotated[bool, typer.Option(help="Keep only the car: drop far blobs, fill small enclosed holes.")]
Size = Annotated[str | None, typer.Option(help="Model input N or WxH (default: the checkpoint's).")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
Precision = Annotated[str, typer.Option(help="auto, fp32, bf16, fp16 or int8 (x86 CPU, calibrated at load).")]
Backend = Annotated[str, typer.Option(help="auto, torch or onnxruntime.")]
Tta = Annotated[bool, typer.Option(help="Average with the horizontally flipped photo.")]
Threshold = Annotated[float, typer.Option(help="Car where the probability exceeds this.")]
# Decoding many photos: evaluate, predict, submit.
BatchSize = Annotated[int, typer.Option(help="Images per model batch.")]
Workers = Annotated[int | None, typer.Option(help="Decoding processes (0: none; default: by cores).")]
Progress = Annotated[bool, typer.Option(help="Show a progress bar.")]
# Output pictures: predict, cutout.
SoftEdges = Annotated[bool, typer.Option(help="Soft alpha in a thin edge band.")]
Quality = Annotated[int | None, typer.Option(help="JPEG/WebP quality, 1-100 [jpg 95, webp 90].")]
Margin = Annotated[float, typer.Option(help="Space around the framed car, a fraction of its box.")]
# Choosing networks: bench, ablation.
Models = Annotated[
    str | None, typer.Option(help="Comma-separated networks (default: all six; see 'maskingnet models').")
]


MODEL_GROUP: dict[str, tuple[Any, Any]] = {
    "model": (ModelFile, None),
    "size": (Size, None),
    "device": (Device, "auto"),
    "precision": (Precision, "auto"),
    "backend": (Backend, "auto"),
    "tta": (Tta, False),
    "refine": (Refine, True),
    "guided": (Guided, False),
    "clean": (Clean, True),
}
"""The model-running group: option name -> (its type and help, its default). Each becomes the field of the
same name of :class:`~maskingnet.inference.settings.ModelSettings` (``model`` its ``checkpoint``)."""

ModelGroup = Any
"""The type of a verb's ``settings`` parameter: :func:`model_settings` puts the group's options in its
place and hands the verb one ``ModelSettings``."""


def settings_from_options(values: dict[str, Any]) -> Any:
    """The group's option values as one ``ModelSettings`` (the model name resolved to its file)."""
    from maskingnet.inference.settings import ModelSettings

    values = dict(values)
    return ModelSettings(checkpoint=model_path(values.pop("model")), **values)


def model_settings(without: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Give a verb the model-running group: its ``settings`` parameter becomes the group's options on the
    command line (those in ``without`` left out, at their defaults) and arrives as one ``ModelSettings``."""
    group = {name: spec for name, spec in MODEL_GROUP.items() if name not in without}
    return option_group("settings", group, settings_from_options)


REQUIRED = inspect.Parameter.empty
"""The default of an option in a group that must be given."""


def option_group(
    target: str, group: dict[str, tuple[Any, Any]], build: Callable[[dict[str, Any]], Any]
) -> Callable[[F], F]:
    """Give a verb a group of options (name -> (its type and help, its default)): its parameter ``target``
    becomes the group's options on the command line and arrives as ``build`` of their values."""

    def decorate(function: F) -> F:
        signature = inspect.signature(function)
        parameters = []
        for parameter in signature.parameters.values():
            if parameter.name != target:
                annotation = eval(parameter.annotation, function.__globals__)  # noqa: S307 - our own source
                parameters.append(parameter.replace(annotation=annotation))
                continue
            parameters += [
                inspect.Parameter(name, parameter.kind, default=default, annotation=kind)
                for name, (kind, default) in group.items()
            ]

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in group}
            return function(*args, **{target: build(values)}, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
        return wrapper  # type: ignore[return-value]

    return decorate


def model_path(model: str | None) -> Path:
    """``-m/--model``: a bundled name, a file, or (None) the default bundled model, as a file path."""
    from maskingnet.models.bundled import resolve_model

    return resolve_model(model)


BUNDLED_TERMS = (
    "the bundled model's weights come from Kaggle's Carvana data: non-commercial use only; for "
    "other uses train on your own photos (README: 'Fine-tune on your own photos')"
)


def say_terms(verb_name: str, checkpoint: Any) -> None:
    """First line of a verb that runs a bundled model: the terms its weights come with."""
    from maskingnet.models.bundled import is_bundled_file

    if is_bundled_file(checkpoint):
        typer.echo(f"{verb_name}: note: {BUNDLED_TERMS}", err=True)


def model_names(text: str | None) -> tuple[str, ...]:
    """``--models``: the named networks, checked against ``list_models()``; None: all of them."""
    from maskingnet.models import list_models

    known = list_models()
    names = tuple(name.strip() for name in (text or ",".join(known)).split(",") if name.strip())
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown models: {', '.join(unknown)} (choose from {', '.join(known)})")
    return names


def is_user_error(error: BaseException) -> bool:
    """An error with a message for the user (exit 1), as opposed to a bug (a traceback)."""
    return isinstance(error, (MaskingnetError, ValueError, OSError))


def verb(function: F) -> F:
    """Apply the exit-code policy to one verb: a user error becomes ``verb: message`` and exit 1."""
    name = function.__name__

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception as error:
            if not is_user_error(error):
                raise
            typer.echo(f"{name}: {error}", err=True)
            raise typer.Exit(EXIT_FAILED) from None

    return wrapper  # type: ignore[return-value]


RESUME_HINT = "; run the same command again to resume"


def resumable(function: F) -> F:
    """Ctrl-C (SIGINT) or SIGTERM during this verb: one line saying a rerun resumes, the children killed,
    the manifest flushed, exit 130 or 143 at once (:mod:`maskingnet.utils.interrupts`)."""
    return _leaving_on_signals(function, RESUME_HINT)


def interruptible(function: F) -> F:
    """As :func:`resumable`, for a verb that starts over when run again."""
    return _leaving_on_signals(function, "")


def _leaving_on_signals(function: F, hint: str) -> F:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with leave_on_signals(function.__name__, hint):
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"maskingnet {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None,
        typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True),
    ] = None,
) -> None:
    """Cut cars out of photographs: MaskingNet, U-Net, SegNet and Arc. #1-#3 on Carvana-format data."""


# ------------------------------------------------------------------------------------------------ data


@app.command(short_help="Write a synthetic Carvana-format data set.")
@verb
def synth(
    out: Annotated[Path, typer.Option(help="Folder to write the Carvana-format data set into.")],
    cars: Annotated[int, typer.Option(help="Number of train cars (16 photos each).")],
    test_cars: Annotated[int, typer.Option(help="Number of test cars (photos without masks).")] = 0,
    size: Annotated[str, typer.Option(help="Image size WxH.")] = "1918x1280",
    seed: Annotated[int, typer.Option(help="Same seed, byte-identical files.")] = 0,
    workers: Annotated[int | None, typer.Option(help="Processes (default: all CPUs).")] = None,
) -> None:
    """Write a synthetic Carvana-format data set: studio photos of 3-D cars from 16 angles, exact masks."""
    from maskingnet.data.synth import generate, synth_size

    summary = generate(
        out, cars, test_cars=test_cars, size=synth_size(size), seed=seed, workers=workers, progress=True
    )
    images = summary["train_images"] + summary["test_images"]
    typer.echo(
        f"wrote {summary['train_images']} train and {summary['test_images']} test images ({size}) to "
        f"{summary['out']} in {summary['seconds']} s ({images / max(summary['seconds'], 1e-9):.1f} images/s)"
    )


@app.command(short_help="Check a data folder for unusable files.")
@verb
def scan(
    data: Annotated[Path, typer.Argument(help="Carvana folder (train/, ...) or plain (images/ + masks/).")],
    verify: Annotated[bool, typer.Option(help="Also decode every file (slow; finds truncation).")] = False,
) -> None:
    """Check a data folder: one line per unusable file or row on stderr, a summary, non-zero exit if any."""
    from maskingnet.data.carvana import scan as scan_folder

    result = scan_folder(data, verify=verify)
    for problem in result.problems:
        typer.echo(problem, err=True)
    typer.echo(result.summary())
    if result.problems:
        typer.echo(f"{len(result.problems)} files or rows were skipped as unusable", err=True)
        raise typer.Exit(EXIT_FAILED)


@app.command(short_help="The six networks and the bundled models.")
@verb
def models(
    size: Annotated[str, typer.Option(help="Input size for the FLOP count: N or WxH.")] = "512",
    width: Annotated[float, typer.Option(help="Channel width multiplier.")] = 1.0,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON rows instead of a table.")] = False,
) -> None:
    """The six networks (switches, parameters, GFLOPs of one forward pass; FLOPs = 2 x MACs) and the
    models bundled with the package (at 512 and full width: stored numbers, instant; else counted)."""
    import json

    from maskingnet.catalog import STORED_SIZE, STORED_WIDTH, format_models_table, read_catalog
    from maskingnet.utils import parse_size

    size_wh = parse_size(size)
    catalog = read_catalog()
    if (size_wh, width) == (STORED_SIZE, STORED_WIDTH):
        rows = catalog["networks"]
    else:
        from maskingnet.models.report import models_table

        rows = models_table(size=size_wh, width=width)
    if json_output:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(format_models_table(rows))
    typer.echo("\nBundled models (-m NAME; the first is the default):")
    for bundled in catalog["bundled"]:
        typer.echo(f"  {bundled['name']:<20} {bundled['summary']}")


# --------------------------------------------------------------------------------------------- training


# The options default to None, "not given": a resumed run keeps its stored settings and --init-from brings
# its model's. The help shows TrainConfig's own defaults, so the two cannot disagree.
TRAIN_DEFAULTS = TrainConfig()


def train_option(name: str, help: str, *declarations: str) -> Any:
    """A ``train`` option for the TrainConfig field ``name``; its help ends with that field's default, in
    click's own ``[default: ...]`` form (click would show None, the option's own default)."""
    value = getattr(TRAIN_DEFAULTS, name)
    if isinstance(value, bool):
        shown = "on" if value else "off"
    elif isinstance(value, tuple):
        shown = "x".join(str(v) for v in value)
    else:
        shown = f"{value:g}" if isinstance(value, float) else str(value)
    return typer.Option(*declarations, help=f"{help}  [default: {shown}]")


TRAIN_OPTIONS: dict[str, Any] = {
    "out": Annotated[Path, typer.Option(help="Run folder (config, metrics, curves, checkpoints).")],
    "data": Annotated[Path | None, typer.Option(help="Carvana-layout (or images/ + masks/) folder.")],
    "model": Annotated[str | None, train_option("model", "One of 'maskingnet models'.")],
    "epochs": Annotated[int | None, train_option("epochs", "Epochs.")],
    "batch_size": Annotated[int | None, train_option("batch_size", "Images per step per process.")],
    "lr": Annotated[float | None, train_option("lr", "Adam learning rate.")],
    "lr_step": Annotated[int | None, train_option("lr_step", "Times --lr-gamma every N epochs.")],
    "lr_gamma": Annotated[float | None, train_option("lr_gamma", "StepLR factor.")],
    "size": Annotated[str | None, train_option("size", "Training size N or WxH.")],
    "scale": Annotated[
        float | None, typer.Option(help="Photo scale, e.g. 0.25: 1918x1280 -> 480x320 (instead of --size).")
    ],
    "crop": Annotated[
        str | None,
        typer.Option(help="Train on random WxH crops of the scaled photo (validation: whole photos)."),
    ],
    "width": Annotated[float | None, train_option("width", "Channel width multiplier.")],
    "loss": Annotated[str | None, train_option("loss", " or ".join(LOSSES) + ".")],
    "augment": Annotated[
        bool | None,
        train_option("augment", "Flip, shift/scale/rotate, colour jitter.", "--augment/--no-augment"),
    ],
    "vgg_weights": Annotated[Path | None, typer.Option(help="Local torchvision vgg16(_bn) weights.")],
    "init_from": Annotated[
        str | None,
        typer.Option(
            help="Fine-tune: start from this bundled model or checkpoint (its model, width and size are "
            "the defaults)."
        ),
    ],
    "split": Annotated[str | None, train_option("split", "car (by car id) or thesis (4071/1017).")],
    "val_fraction": Annotated[float | None, train_option("val_fraction", "Share of cars held out.")],
    "val_cars": Annotated[
        str | None,
        typer.Option(
            help="Validate on exactly these cars: ids separated by commas, or @FILE (one or more a line)."
        ),
    ],
    "fold": Annotated[int | None, typer.Option(help="Validate on fold K of --folds (by car).")],
    "folds": Annotated[int | None, train_option("folds", "Number of folds for --fold.")],
    "seed": Annotated[int | None, train_option("seed", "Seed: split, init, data order, augmentation.")],
    "workers": Annotated[
        int | None, typer.Option(help="DataLoader processes per training process (default: by cores).")
    ],
    "threads": Annotated[int | None, typer.Option(help="torch CPU threads per process (default: torch's).")],
    "device": Annotated[str | None, train_option("device", "auto, cpu, cuda, cuda:N or mps.")],
    "precision": Annotated[str | None, train_option("precision", ", ".join(PRECISIONS) + ".")],
    "channels_last": Annotated[
        bool | None, train_option("channels_last", "channels_last memory format.", "--channels-last")
    ],
    "compile": Annotated[bool | None, train_option("compile", "torch.compile the model.", "--compile")],
    "accumulate": Annotated[int | None, train_option("accumulate", "Batches per optimizer step.")],
    "max_steps": Annotated[int | None, typer.Option(help="Stop after this many optimizer steps.")],
    "cache": Annotated[
        Path | None,
        typer.Option(
            help="Folder for the photos and masks at the training size, made once and read every epoch "
            "(rebuilt for a changed size or file)."
        ),
    ],
    "resume": Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")],
    "progress": Progress,
}
"""``train``'s options, each the TrainConfig field of its name."""
TRAIN_GROUP = {
    name: (kind, {"out": REQUIRED, "resume": False, "progress": True}.get(name))
    for name, kind in TRAIN_OPTIONS.items()
}
"""``train``'s options with their defaults: None (not given) for all but ``out``, ``resume``, ``progress``."""

TRAIN_PATHS = ("data", "vgg_weights", "cache")
"""Options given as paths that the run's config.json stores as strings."""


def train_config(options: dict[str, Any]) -> TrainConfig:
    """``train``'s options as a :class:`TrainConfig`: those given override a resumed run's stored ones, and
    ``--init-from`` fills in the model it starts from."""
    from maskingnet.train import init_from_defaults
    from maskingnet.train.split import read_car_list
    from maskingnet.utils import parse_size

    out, resume, progress = options.pop("out"), options.pop("resume"), options.pop("progress")
    init_from = options.get("init_from")
    converters = {"size": parse_size, "crop": parse_size, "val_cars": read_car_list}
    converters.update(dict.fromkeys(TRAIN_PATHS, str))
    given = {
        key: converters[key](value) if key in converters else value
        for key, value in options.items()
        if value is not None
    }
    stored = resume and (out / "config.json").is_file()
    if not stored and "data" not in given:
        raise ValueError("--data is required (except when resuming a run)")
    settings = {**given, "out": str(out), "resume": resume, "progress": progress}
    if init_from and not stored:
        settings = {**init_from_defaults(init_from), **settings}
    return TrainConfig.from_run(out, **settings) if stored else TrainConfig(**settings)


@app.command(short_help="Train a network.")
@verb
@resumable
@option_group("config", TRAIN_GROUP, train_config)
def train(config: TrainConfig) -> None:
    """Train a network (the thesis recipe by default); under torchrun, one process per device (DDP)."""
    from maskingnet.train import train as run_train

    say_trained(run_train(config))


def say_trained(summary: dict[str, Any]) -> None:
    """The run's one line; exit 1 when some files were skipped as unusable."""
    if summary["best_dice"] is not None:
        typer.echo(
            f"{summary['run']}: {summary['epochs']} epochs ({summary['stopped']}), best val Dice "
            f"{summary['best_dice']:.5f} at epoch {summary['best_epoch']} -> {summary['best_checkpoint']}"
        )
    if summary["bad_inputs"]:
        typer.echo(f"{summary['bad_inputs']} files were skipped as unusable", err=True)
        raise typer.Exit(1)


@app.command("train-refiner", short_help="Train the edge refiner of a trained network.")
@verb
def train_refiner(
    model: Annotated[
        str,
        typer.Option(
            "-m",
            "--model",
            metavar="NAME_OR_PATH",
            help="The trained network (a run's checkpoint): its val cars are left out, its answers used.",
        ),
    ],
    data: Annotated[Path, typer.Option(help="The network's training data (Carvana or plain layout).")],
    out: Annotated[Path, typer.Option(help="Model file to write: the network with the refiner inside.")],
    steps: Annotated[int, typer.Option(help="Optimizer steps (12,000: 27 minutes on 2 cores).")] = 12000,
    batch_size: Annotated[int, typer.Option(help="Patches per step.")] = 16,
    lr: Annotated[float, typer.Option(help="Adam learning rate (cosine to 0).")] = 2e-3,
    real_fraction: Annotated[
        float,
        typer.Option(
            help="Share of patches whose coarse input is the network's own answer (the rest: damaged truth)."
        ),
    ] = 1.0,
    channels: Annotated[int, typer.Option(help="Refiner width.")] = 8,
    scale: Annotated[float, typer.Option(help="Refiner's working scale of the full photo.")] = 1.0,
    band: Annotated[int, typer.Option(help="Working pixels either side of the outline it may change.")] = 12,
    seed: Annotated[int, typer.Option(help="Seed: patches, damage, initial weights.")] = 0,
    cache: Annotated[Path | None, typer.Option(help="Folder to keep decoded photos in between runs.")] = None,
    photos: Annotated[
        int | None,
        typer.Option(
            help="Use at most N training photos, spread over as many cars as possible (memory: ~30 MB a "
            "1918x1280 photo) [all]."
        ),
    ] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads [torch's].")] = None,
    progress: Progress = True,
) -> None:
    """Train the edge refiner (full-resolution outline) for a trained network, on its training cars."""
    options = dict(locals())  # every option as parsed, before anything else is named here
    import torch

    from maskingnet.train.refiner import train_refiner as run_refiner

    if threads:
        torch.set_num_threads(threads)
    summary = run_refiner(refiner_config(options), say=lambda line: typer.echo(line, err=True))
    seconds = summary["seconds"]
    typer.echo(f"{summary['out']}: refiner trained for {summary['steps']} steps in {seconds:.0f} s")


def refiner_config(options: dict[str, Any]) -> Any:
    """``train-refiner``'s options as a ``RefinerTrainConfig`` (paths as strings, the model name resolved)."""
    from maskingnet.models.bundled import resolve_model
    from maskingnet.train.refiner import RefinerTrainConfig

    fields = {name: value for name, value in options.items() if name != "threads"}
    cache = fields.pop("cache")
    return RefinerTrainConfig(
        data=str(fields.pop("data")),
        model=str(resolve_model(fields.pop("model"))),
        out=str(fields.pop("out")),
        cache=str(cache) if cache else None,
        **fields,
    )


# ---------------------------------------------------------------------------------- running a model


@app.command(short_help="Mean Dice of a model on labelled photos.")
@verb
@interruptible
@model_settings()
def evaluate(
    data: Annotated[Path, typer.Option(help="Carvana-layout (or images/ + masks/) folder.")],
    split: Annotated[str, typer.Option(help="val (the run's held-out images) or all.")] = "val",
    out: Annotated[Path | None, typer.Option(help="Output folder [RUN/eval-<checkpoint>-<split>].")] = None,
    worst: Annotated[int, typer.Option(help="Rows in worst.png.")] = 8,
    settings: ModelGroup = None,
    threshold: Threshold = 0.5,
    batch_size: BatchSize = 4,
    workers: Workers = None,
    progress: Progress = True,
) -> None:
    """Mean Dice at the original resolution, per-image CSV and the worst cases as a picture."""
    from maskingnet.evaluate import evaluate as run_evaluate
    from maskingnet.outputs import check_threshold

    check_threshold(threshold)
    summary = run_evaluate(
        settings,
        data,
        split=split,
        out=out,
        batch_size=batch_size,
        workers=workers,
        threshold=threshold,
        worst=worst,
        progress=progress,
    )
    typer.echo(
        f"mean Dice {summary['mean_dice']:.5f} over {summary['images']} images at the original resolution "
        f"(1-Dice = {summary['one_minus_dice_pixels_per_image']:.0f} px/image) -> {summary['out']}"
    )
    if summary["bad_inputs"]:
        typer.echo(f"{summary['bad_inputs']} files were skipped as unusable", err=True)
        raise typer.Exit(EXIT_FAILED)


@app.command(short_help="Cut cars out of photos into files.")
@verb
@resumable
@model_settings()
def predict(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders, globs (found by content).")],
    out: Annotated[Path, typer.Option(help="Folder for the outputs.")],
    save: Annotated[str, typer.Option(help="Any of mask,cutout,white,overlay.")] = "mask,cutout",
    background: Annotated[str, typer.Option(help="Colour behind the car in the 'white' output.")] = "white",
    soft_edges: SoftEdges = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            help="Redo images whose outputs already exist (even when made with the same model and settings)."
        ),
    ] = False,
    recursive: Annotated[bool, typer.Option(help="Look into sub-folders of folder inputs.")] = True,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="png, webp or jpg for the cut-out and the photo on a colour (auto: PNG cut-out, "
            "JPEG on a colour; a jpg cut-out is the car on --background).",
        ),
    ] = "auto",
    quality: Quality = None,
    crop_to_car: Annotated[
        bool, typer.Option(help="Frame the cut-out and the photo on a colour around the car.")
    ] = False,
    margin: Margin = 0.05,
    canvas: Annotated[
        str | None,
        typer.Option(
            help="Framed outputs of this WxH, the car scaled to fit and centred (implies --crop-to-car)."
        ),
    ] = None,
    listing: Annotated[
        bool,
        typer.Option(
            help="One scale and one baseline for all photos of a folder on --canvas (one car's listing)."
        ),
    ] = False,
    watch: Annotated[
        bool, typer.Option(help="Keep running: cut out photos that arrive in the inputs (Ctrl-C stops).")
    ] = False,
    watch_interval: Annotated[float, typer.Option(help="Seconds between looks at the inputs.")] = 2.0,
    settings: ModelGroup = None,
    threshold: Threshold = 0.5,
    batch_size: BatchSize = 4,
    workers: Workers = None,
    progress: Progress = True,
) -> None:
    """Cut cars out of photos: masks, transparent cut-outs, white-background JPEGs, overlays; the input tree
    is mirrored under --out, with manifest.csv describing every photo."""
    options = dict(locals())  # every option as parsed, before anything else is named here
    from maskingnet.predict import predict_files

    say_terms("predict", settings.checkpoint)
    config = predict_config(options)
    if watch:
        watch_inputs(config, watch_interval)
        return
    say_predicted(predict_files(config), out)


def predict_config(options: dict[str, Any]) -> Any:
    """``predict``'s options as a ``PredictConfig`` (``--canvas`` implies ``--crop-to-car``)."""
    from maskingnet.outputs import parse_color, parse_kinds
    from maskingnet.predict import PredictConfig
    from maskingnet.utils import parse_size

    fields = {name: value for name, value in options.items() if name not in ("watch", "watch_interval")}
    canvas = fields.pop("canvas")
    return PredictConfig(
        model=fields.pop("settings"),
        save=parse_kinds(fields.pop("save")),
        background=parse_color(fields.pop("background")),
        crop_to_car=fields.pop("crop_to_car") or canvas is not None,
        canvas=parse_size(canvas, square=False, what="--canvas"),
        **fields,
    )


def say_predicted(summary: Any, out: Path) -> None:
    """The batch's one line; exit 1 when some photos failed."""
    typer.echo(
        f"{summary.done} done, {summary.failed} failed, {summary.skipped} skipped (outputs exist) "
        f"in {summary.seconds:.1f} s ({summary.images_per_second:.2f} img/s) -> {out}",
        err=summary.failed > 0,
    )
    if summary.failed:
        raise typer.Exit(EXIT_FAILED)


def watch_inputs(config: Any, interval: float) -> None:
    """``predict --watch``: one line per round with new photos, until Ctrl-C."""
    from maskingnet.predict.watch import watch

    typer.echo(f"predict: watching {', '.join(map(str, config.inputs))} (Ctrl-C stops)", err=True)

    def said(summary: Any) -> None:
        typer.echo(f"{summary.done} done, {summary.failed} failed in {summary.seconds:.1f} s -> {config.out}")

    watch(config, interval=interval, on_round=said)


MAX_STDIN_BYTES = 100 * 1024 * 1024
CUTOUT_KINDS = ("cutout", "white", "mask")


@app.command(short_help="Cut the car out of one photo (- for stdin/stdout).")
@verb
@model_settings(without=("size", "backend", "tta"))
def cutout(
    photo: Annotated[str, typer.Argument(help="The photo, or - to read it from stdin.")],
    output: Annotated[
        str | None,
        typer.Option(
            "-o",
            "--output",
            help="Output file (.png, .webp, .jpg), or - for stdout (the default when stdout is "
            "not a terminal).",
        ),
    ] = None,
    kind: Annotated[
        str, typer.Option(help="cutout (transparent), white (on --background) or mask.")
    ] = "cutout",
    background: Annotated[str, typer.Option(help="Colour behind the car for 'white' and JPEG.")] = "white",
    soft_edges: SoftEdges = False,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format", help="png, webp or jpg (default: from the -o file's suffix; png on stdout)."
        ),
    ] = None,
    quality: Quality = None,
    crop_to_car: Annotated[bool, typer.Option(help="Frame the picture around the car.")] = False,
    margin: Margin = 0.05,
    canvas: Annotated[
        str | None,
        typer.Option(
            help="A picture of this WxH, the car scaled to fit and centred (implies --crop-to-car)."
        ),
    ] = None,
    settings: ModelGroup = None,
    threshold: Threshold = 0.5,
) -> None:
    """One photo, one cut-out, for scripts and pipes: maskingnet cutout car.jpg -o car.png, or
    maskingnet cutout car.jpg > car.png. The same output options as predict."""
    from maskingnet.outputs import check_threshold, parse_color
    from maskingnet.outputs.options import picture_request
    from maskingnet.utils import parse_size

    check_threshold(threshold)
    output = cutout_output(output)
    check_standard_streams(photo == "-", output == "-")
    fmt = cutout_format(kind, fmt, output)
    on_colour = kind == "white" or (kind == "cutout" and fmt.lower() in ("jpg", "jpeg"))
    picture, options = picture_request(
        "mask" if kind == "mask" else "cutout",
        format=fmt,
        quality=quality,
        crop_to_car=crop_to_car,
        margin=margin,
        canvas=parse_size(canvas, square=False, what="--canvas"),
        soft_edges=soft_edges,
        background=parse_color(background) if on_colour else None,
        threshold=threshold,
    )
    write_output(output, cut_out(settings, photo, picture, options))


CUTOUT_FORMATS = {".png": "png", ".webp": "webp", ".jpg": "jpg", ".jpeg": "jpg"}


def cutout_output(output: str | None) -> str:
    """``-o``: the file, or ``-`` (stdout), which is the default only when stdout is not a terminal."""
    if output is not None:
        return output
    if sys.stdout is None or sys.stdout.isatty():
        raise ValueError("give -o FILE, or pipe the output (maskingnet cutout car.jpg > car.png)")
    return "-"


def cutout_format(kind: str, fmt: str | None, output: str) -> str:
    """``--kind`` checked, and ``--format``, by default from the output file's suffix (PNG on stdout)."""
    if kind not in CUTOUT_KINDS:
        raise ValueError(f"--kind must be one of {', '.join(CUTOUT_KINDS)} (got {kind!r})")
    if fmt is None:
        fmt = "png" if output == "-" else CUTOUT_FORMATS.get(Path(output).suffix.lower())
        if fmt is None:
            raise ValueError(f"{output}: output must end in .png, .webp or .jpg (or give --format)")
    return fmt


def cut_out(settings: Any, photo: str, picture: str, options: Any) -> bytes:
    """One photo (a path, or ``-`` for stdin) run through the model, as the encoded ``picture``."""
    from maskingnet.inference import Predictor
    from maskingnet.outputs.files import finished_pictures, picture_bytes

    source = _read_stdin() if photo == "-" else Path(photo)
    predictor = Predictor.from_settings(settings)
    item = predictor.prepare(source, need_photo=picture != "mask")
    probs = predictor.predict_prepared([item])[0]
    image = finished_pictures((picture,), item.photo_array(), probs, options)[picture]
    return picture_bytes(picture, image, options, options.fmt)


def write_output(output: str, data: bytes) -> None:
    """The bytes to stdout (``-``) or atomically to the file."""
    from maskingnet.utils import atomic_save

    if output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    atomic_save(Path(output), lambda tmp: Path(tmp).write_bytes(data))


def check_standard_streams(reads_stdin: bool, writes_stdout: bool) -> None:
    """Refuse ``-`` for a stream the shell closed (``<&-``, ``>&-``) before the model is loaded: Python
    then has no ``sys.stdin`` or ``sys.stdout`` at all."""
    if reads_stdin and getattr(sys.stdin, "buffer", None) is None:
        raise ValueError("stdin is closed: pipe a photo in, or give its path instead of -")
    if writes_stdout and getattr(sys.stdout, "buffer", None) is None:
        raise ValueError("stdout is closed: give -o a file instead of -")


def _read_stdin() -> bytes:
    data = sys.stdin.buffer.read(MAX_STDIN_BYTES + 1)
    if len(data) > MAX_STDIN_BYTES:
        raise ValueError(f"stdin: more than {MAX_STDIN_BYTES // (1024 * 1024)} MB; not a photo")
    if not data:
        raise ValueError("stdin: empty; pipe a photo in or give its path")
    return data


@app.command(short_help="Write a Kaggle Carvana submission.")
@verb
@resumable
@model_settings()
def submit(
    test_dir: Annotated[Path, typer.Argument(help="Kaggle test folder.")],
    out: Annotated[Path, typer.Option(help="submission.csv or .csv.gz.")] = Path("submission.csv.gz"),
    sample: Annotated[Path | None, typer.Option(help="Row-order CSV (default: beside TEST_DIR).")] = None,
    flush_every: Annotated[int, typer.Option(help="Rows per durable chunk.")] = 64,
    settings: ModelGroup = None,
    threshold: Threshold = 0.5,
    batch_size: BatchSize = 4,
    workers: Workers = None,
    progress: Progress = True,
) -> None:
    """Write a Kaggle Carvana submission (img,rle_mask), streaming and resumable; torchrun splits the work."""
    from maskingnet.outputs import check_threshold
    from maskingnet.submit import SubmitConfig, kaggle_estimate
    from maskingnet.submit import submit as run_submit

    check_threshold(threshold)
    config = SubmitConfig(
        model=settings,
        test_dir=test_dir,
        out=out,
        threshold=threshold,
        batch_size=batch_size,
        workers=workers,
        sample=sample,
        flush_every=flush_every,
        progress=progress,
    )
    summary = run_submit(config)
    if summary.merged:
        typer.echo(kaggle_estimate(summary), err=True)
        resumed = f" ({summary.resumed} rows kept from the interrupted run)" if summary.resumed else ""
        typer.echo(f"{summary.out}: complete{resumed}", err=True)
    typer.echo(f"{summary.done} done, {summary.failed} failed", err=summary.failed > 0)
    if summary.failed:
        raise typer.Exit(EXIT_FAILED)


@app.command(short_help="Export a checkpoint to ONNX.")
@verb
def export(
    out: Annotated[Path, typer.Option(help="The .onnx file to write.")] = Path("model.onnx"),
    model: ModelFile = None,
    opset: Annotated[int, typer.Option(help="ONNX opset (18 or newer).")] = 18,
    size: Annotated[str, typer.Option(help="'dynamic' (batch/height/width) or fixed N, WxH.")] = "dynamic",
    check: Annotated[bool, typer.Option(help="Run onnx.checker on the result.")] = True,
) -> None:
    """Export a checkpoint to ONNX (inputs image + coords, output P(car)) for ONNX Runtime and others."""
    from maskingnet.export import export_onnx

    result = export_onnx(model_path(model), out, opset=opset, size=size, check=check)
    shape = "dynamic batch/height/width"
    if not result.dynamic:
        shape = "dynamic batch, {}x{}".format(*result.input_size)
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"{result.path}: opset {result.opset}, {shape}, {result.seconds:.1f} s")


@app.command(short_help="Serve cut-outs over HTTP.")
@verb
@model_settings()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: a free one, printed at start).")] = 8000,
    max_upload_mb: Annotated[float, typer.Option(help="Largest accepted upload (413 above).")] = 20.0,
    workers: Annotated[int, typer.Option(help="Server processes, one model each.")] = 1,
    max_batch: Annotated[int, typer.Option(help="Most requests answered by one model call.")] = 8,
    max_wait_ms: Annotated[float, typer.Option(help="Longest wait for requests to batch with.")] = 10.0,
    queue_size: Annotated[int, typer.Option(help="Requests waiting for the model before 503.")] = 64,
    max_pixels: Annotated[
        int,
        typer.Option(help="Larger photos are refused (422); 4 photos this size may be in flight at once."),
    ] = 16_000_000,
    max_connections: Annotated[
        int, typer.Option(help="Open connections; at the cap idle ones are closed to make room.")
    ] = 128,
    read_timeout: Annotated[
        float, typer.Option(help="Seconds to send a request head, or between bytes of a body (408).")
    ] = 10.0,
    request_timeout: Annotated[
        float, typer.Option(help="Seconds from a request head to the end of its answer.")
    ] = 120.0,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            metavar="HOST",
            help="Also answer requests for this Host (repeatable; *.example.com, * for any); "
            "always: localhost, 127.0.0.1, [::1] and --host.",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            metavar="KEY",
            envvar="MASKINGNET_API_KEY",
            show_envvar=True,
            help="Require this key (Authorization: Bearer KEY or X-API-Key) on all but /healthz.",
        ),
    ] = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(metavar="ORIGIN", help="Let pages of this origin call the API (repeatable; * for any)."),
    ] = None,
    access_log: Annotated[
        str | None,
        typer.Option(metavar="FILE", help="Append one line per request to this file (- for stderr)."),
    ] = None,
    settings: ModelGroup = None,
) -> None:
    """HTTP service: POST /v1/mask, /v1/cutout (PNG); GET /healthz, /v1/model; a drag-and-drop page at /."""
    options = dict(locals())  # every option as parsed, before anything else is named here
    from maskingnet.serve import serve as run_server

    say_terms("serve", settings.checkpoint)
    run_server(serve_config(options))


def serve_config(options: dict[str, Any]) -> Any:
    """``serve``'s options as a ``ServeConfig`` (repeated options as tuples, an empty key as none)."""
    from maskingnet.serve import ServeConfig

    fields = dict(options)
    return ServeConfig(
        model=fields.pop("settings"),
        read_timeout_s=fields.pop("read_timeout"),
        request_timeout_s=fields.pop("request_timeout"),
        allowed_hosts=tuple(fields.pop("allowed_host") or ()),
        api_key=fields.pop("api_key") or None,
        cors_origins=tuple(fields.pop("cors_origin") or ()),
        **fields,
    )


# ----------------------------------------------------------------------------------------- the project


Baseline = Annotated[
    str | None,
    typer.Option(
        metavar="NAME_OR_PATH",
        help="Also time this model's default pipeline beside --model's, in the same turns (the model a new "
        "one replaces).",
    ),
]


@app.command(short_help="Benchmark the networks and the pipeline.")
@verb
def bench(
    out: Annotated[Path, typer.Option(help="Folder for bench.json and bench.md.")] = Path("runs/bench"),
    data: Annotated[
        Path | None,
        typer.Option(
            help="Carvana-layout folder of real photos for the mask agreement, the pipeline and the RLE rows "
            "(none: those are skipped)."
        ),
    ] = None,
    quick: Annotated[bool, typer.Option(help="Small sizes, single runs: minutes on 2 CPU cores.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    size: Annotated[int | None, typer.Option(help="Six-model timing side [GPU 512, CPU 256].")] = None,
    batch: Annotated[int | None, typer.Option(help="Six-model timing batch [GPU 4, CPU 1, quick 2].")] = None,
    repeats: Annotated[int | None, typer.Option(help="Timed runs per figure (best is kept).")] = None,
    model: ModelFile = None,
    baseline: Baseline = None,
    models: Models = None,
    peer: Annotated[
        str | None,
        typer.Option(
            help="Only the peer section, against these tools: rembg, or rembg,imgly (needs --data and 'make "
            "peer'). Without it every section runs, the peers' where they are installed."
        ),
    ] = None,
    section: Annotated[
        list[str] | None,
        typer.Option(
            help="Only this section (repeatable): models, peak, fast_path, pipeline, default_model, int8, "
            "output_stage, rle, startup, peer."
        ),
    ] = None,
) -> None:
    """Benchmarks: the six networks' cost, the CPU fast path, conv peak, end-to-end predict, RLE, peers."""
    from maskingnet.bench.report import run_bench
    from maskingnet.bench.timing import BenchConfig

    sections = bench_sections(peer, section)
    command = bench_command(quick, peer, out, section, baseline)
    config = BenchConfig(
        out=out,
        quick=quick,
        device=device,
        models=model_names(models),
        size=size,
        batch=batch,
        repeats=repeats,
        data=data,
        checkpoint=model_path(model),
        baseline=model_path(baseline) if baseline else None,
        extra={"command": command},
        **sections,
    )
    result = run_bench(config)
    typer.echo(f"wrote {out / 'bench.json'} and {out / 'bench.md'} in {result['seconds']} s")


def bench_command(
    quick: bool, peer: str | None, out: Path, section: list[str] | None, baseline: str | None
) -> str:
    """The command line recorded in ``bench.json`` (the options that change what runs)."""
    command = "maskingnet bench" + (" --quick" if quick else "") + (f" --peer {peer}" if peer else "")
    command += f" --out {out}" + "".join(f" --section {name}" for name in section or ())
    return command + (f" --baseline {baseline}" if baseline else "")


def bench_sections(peer: str | None, section: list[str] | None) -> dict[str, Any]:
    """``--peer`` and ``--section`` checked, as ``BenchConfig``'s ``sections`` and ``peers`` (neither given:
    nothing, so every section runs)."""
    from maskingnet.bench.timing import BenchConfig

    peers = tuple(name.strip() for name in (peer or "").split(",") if name.strip())
    if peer is not None and (not peers or peers[0] != "rembg" or not set(peers) <= {"rembg", "imgly"}):
        raise typer.BadParameter(f"{peer!r}: rembg, or rembg,imgly", param_hint="--peer")
    sections: dict[str, Any] = {"sections": ("peer",), "peers": peers} if peer else {}
    if section:
        known = BenchConfig.__dataclass_fields__["sections"].default
        unknown = [name for name in section if name not in known]
        if unknown:
            choices = ", ".join(known)
            raise typer.BadParameter(f"{', '.join(unknown)}: choose from {choices}", param_hint="--section")
        sections["sections"] = tuple(section)
    return sections


@app.command(short_help="Reproduce the thesis's ablation table.")
@verb
def ablation(
    data: Annotated[Path, typer.Option(help="Carvana-layout folder to train and evaluate on.")],
    out: Annotated[Path, typer.Option(help="Folder: one run per network, ablation.md/.json/.png.")] = Path(
        "runs/ablation"
    ),
    epochs: Annotated[int, typer.Option(help="Epochs for every network.")] = 3,
    size: Annotated[str, typer.Option(help="Training size WxH for every network.")] = "256x171",
    width: Annotated[float, typer.Option(help="Channel width multiplier for every network.")] = 0.25,
    seed: Annotated[int, typer.Option(help="Seed of split, init and data order (the same for all).")] = 0,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 4,
    models: Models = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train the six networks on one split and budget, evaluate at full resolution, write the table."""
    from maskingnet.bench.ablation import AblationConfig, run_ablation
    from maskingnet.utils import parse_size

    names = model_names(models)
    command = (
        f"maskingnet ablation --data {data} --out {out} --epochs {epochs} --size {size} --width {width} "
        f"--seed {seed} --batch-size {batch_size} --models {','.join(names)}"
    )
    config = AblationConfig(
        data=data,
        out=out,
        models=names,
        epochs=epochs,
        size=parse_size(size),
        width=width,
        seed=seed,
        batch_size=batch_size,
        device=device,
        progress=progress,
        extra={"command": command},
    )
    result = run_ablation(config, say=typer.echo)
    typer.echo(f"wrote {out / 'ablation.md'} ({len(result['rows'])} networks, {result['seconds']:.0f} s)")


@app.command(short_help="The whole project on synthetic data.")
@verb
def demo(
    out: Annotated[Path, typer.Option(help="Folder for everything the demo writes.")] = Path("runs/demo"),
    quick: Annotated[bool, typer.Option(help="Tiny version: seconds instead of minutes.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic data.")] = 0,
    photos: Annotated[
        Path | None,
        typer.Option(
            help="Folder of real car photos to cut out with the bundled model (default: synthetic ones)."
        ),
    ] = None,
) -> None:
    """Run the project end to end: the bundled model on photos, then training on synthetic data."""
    from maskingnet.demo import DemoConfig, run_demo

    run_demo(DemoConfig(out=out, quick=quick, seed=seed, photos=photos), log=typer.echo)


@app.command(short_help="Print the versions.")
def version() -> None:
    """Print the maskingnet and torch versions."""
    import torch

    typer.echo(f"maskingnet {__version__} (torch {torch.__version__})")


def main() -> None:
    """The ``maskingnet`` command. SIGINT and SIGTERM leave in one line from the start (each verb then
    names itself), not with a traceback from wherever the signal finds the imports."""
    verb_name = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else "maskingnet"
    with leave_on_signals(one_line(verb_name)[:40]):
        app()
