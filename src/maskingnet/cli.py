"""The ``maskingnet`` command line. Thin: every verb parses options and calls one library function.

Library modules are imported inside each verb so that ``maskingnet --help`` answers instantly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    name="maskingnet",
    help="Cut cars out of photographs: MaskingNet, U-Net, SegNet and Arc. #1-#3 on Carvana-format data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Cut cars out of photographs: MaskingNet, U-Net, SegNet and Arc. #1-#3 on Carvana-format data."""


@app.command()
def version() -> None:
    """Print the maskingnet and torch versions."""
    import torch

    from maskingnet import __version__

    typer.echo(f"maskingnet {__version__} (torch {torch.__version__})")


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Folder to write the Carvana-format data set into.")],
    cars: Annotated[int, typer.Option(help="Number of train cars (16 photos each).")],
    test_cars: Annotated[int, typer.Option(help="Number of test cars (photos without masks).")] = 0,
    size: Annotated[str, typer.Option(help="Image size WxH.")] = "1918x1280",
    seed: Annotated[int, typer.Option(help="Same seed, byte-identical files.")] = 0,
    workers: Annotated[int | None, typer.Option(help="Processes (default: all CPUs).")] = None,
) -> None:
    """Write a synthetic Carvana-format data set: studio photos of 3-D cars from 16 angles, exact masks."""
    from maskingnet.data.synth import generate, parse_size

    try:
        summary = generate(out, cars, test_cars=test_cars, size=parse_size(size), seed=seed, workers=workers)
    except ValueError as error:
        typer.echo(f"synth: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"wrote {summary['train_images']} train and {summary['test_images']} test images "
        f"({size}) to {summary['out']}"
    )


def main() -> None:
    app()
