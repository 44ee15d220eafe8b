"""``maskingnet export``: a checkpoint as an ONNX file (graph and metadata: :mod:`maskingnet.models.onnx`).

The file runs on ONNX Runtime (:class:`maskingnet.inference.OnnxBackend`, ``--backend onnxruntime``) or any
other ONNX runtime: inputs ``image`` and ``coords``, output ``probability``, the input spec in the metadata.
"""

from __future__ import annotations

import os

from torch import nn

from maskingnet.models import load_model
from maskingnet.models.checkpoint import load_refiner
from maskingnet.models.onnx import (
    CLASS_NAMES,
    DEFAULT_OPSET,
    INPUT_NAMES,
    OUTPUT_NAME,
    ExportError,
    ExportResult,
    check_exportable,
    export_model,
    read_metadata,
)
from maskingnet.utils import parse_size

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_OPSET",
    "INPUT_NAMES",
    "OUTPUT_NAME",
    "ExportError",
    "ExportResult",
    "export_onnx",
    "onnx_input_size",
    "read_metadata",
]


def onnx_input_size(text: str | int | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"dynamic"``/None -> None (dynamic height and width), else :func:`maskingnet.utils.parse_size`."""
    if isinstance(text, str) and text.strip().lower() == "dynamic":
        return None
    return parse_size(text)


def export_onnx(
    checkpoint: str | os.PathLike | nn.Module,
    out: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    size: str | int | tuple[int, int] | None = None,
    *,
    check: bool = True,
) -> ExportResult:
    """Export a checkpoint (or a model) to ONNX at ``out``, written atomically, checked with ``onnx.checker``.

    ``size`` None / ``"dynamic"``: dynamic batch, height and width (falls back to a fixed size, the
    checkpoint's ``input_size``, if the graph does not allow dynamic height/width). ``size`` N or
    ``"WxH"``: fixed height and width, dynamic batch.
    """
    fixed = onnx_input_size(size)
    check_exportable(opset)
    if isinstance(checkpoint, nn.Module):
        return export_model(checkpoint.eval(), out, opset, fixed, check=check)
    model = load_model(checkpoint, device="cpu")
    return export_model(model.eval(), out, opset, fixed, check=check, refiner=load_refiner(checkpoint))
