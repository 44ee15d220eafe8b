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


def main() -> None:
    app()
