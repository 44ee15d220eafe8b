"""A model's ONNX form: the graph every runtime can run, with the model's config, meta and input spec.

The graph wraps the network so that it needs nothing from maskingnet at run time:

- inputs ``image`` ``(B, 3, H, W)`` float32, normalised RGB (``spec.mean``/``spec.std``), and ``coords``
  ``(B, 2, H, W)`` float32, the photo's ``[X, Y]`` maps (:mod:`maskingnet.data.coords`). Both are always
  inputs so every architecture has the same signature; networks without coordinate maps ignore ``coords``.
- output ``probability`` ``(B, H, W)`` float32: the softmax probability of class 1 ("car"), not logits.

Batch, height and width are dynamic by default (the network pads to its stride and crops back inside the
graph); ``size`` fixes height and width instead. The model config, the checkpoint's meta, the input spec
(``maskingnet.spec``) and the class names are stored in the ONNX metadata as JSON strings, so a backend
rebuilds ``.config``/``.meta``/``.spec`` from the file alone.

Tracing goes through ``torch.onnx.export(dynamo=True)`` (the legacy TorchScript exporter cannot export
``max_unpool2d``). That exporter emits opset 18 natively; lower opsets need a down-conversion that has no
adapter for ``Pad``, so 18 is the default and lower requests fail with a clear message.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from maskingnet import __version__
from maskingnet.data.coords import CONVENTION, whole_photo_coords
from maskingnet.errors import MaskingnetError
from maskingnet.models.spec import CLASS_NAMES, SPEC_KEY, InputSpec
from maskingnet.utils import atomic_save, parse_json

from .checkpoint import model_spec
from .refiner import REFINER_KEY, Refiner, refiner_to_bytes

DEFAULT_OPSET = 18
MIN_OPSET = 18
INPUT_NAMES = ("image", "coords")
OUTPUT_NAME = "probability"
OUTPUT_DESCRIPTION = "probability: (B, H, W) float32 softmax probability of class 1 (car)"
INPUT_DESCRIPTION = (
    "image: (B, 3, H, W) float32 ImageNet-normalised RGB; coords: (B, 2, H, W) float32 [X, Y] maps, "
    + CONVENTION
)
# The trace sample for dynamic exports: not a multiple of any stride, so padding is traced as arithmetic.
DYNAMIC_SAMPLE_SIZE = (72, 56)
ONNX_EXTRA_HINT = "ONNX support is an optional extra: pip install 'maskingnet[onnx]'"

REFINER_WEIGHTS_KEY = "maskingnet.refiner_weights"

__all__ = [
    "REFINER_WEIGHTS_KEY",
    "CLASS_NAMES",
    "DEFAULT_OPSET",
    "INPUT_NAMES",
    "OUTPUT_NAME",
    "ExportError",
    "ExportResult",
    "check_exportable",
    "decode_metadata",
    "export_model",
    "read_metadata",
]


class ExportError(MaskingnetError, RuntimeError):
    """The model could not be exported (or the result failed its check)."""


@dataclass
class ExportResult:
    """What :func:`export_model` wrote."""

    path: Path
    opset: int
    dynamic: bool
    input_size: tuple[int, int] | None
    seconds: float
    notes: list[str] = field(default_factory=list)


class ProbabilityHead(nn.Module):
    """The network plus its softmax: ``(image, coords) -> P(car)`` ``(B, H, W)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(image, coords), dim=1)[:, 1]


def require_onnx():
    """The ``onnx`` module, or an :class:`ExportError` saying how to install the extra."""
    try:
        import onnx
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError as error:
        raise ExportError(f"{ONNX_EXTRA_HINT} ({error})") from error
    return onnx


def check_exportable(opset: int):
    """The ``onnx`` module when this opset can be exported, else an :class:`ExportError` saying why."""
    onnx = require_onnx()
    if opset < MIN_OPSET:
        raise ExportError(
            f"opset {opset} is not supported: the dynamo exporter emits opset {MIN_OPSET} and there is no "
            f"down-converter for Pad; use --opset {MIN_OPSET} or newer"
        )
    return onnx


def _sample_inputs(size: tuple[int, int], batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    width, height = size
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(batch, 3, height, width, generator=generator)
    return image, whole_photo_coords(batch, height, width)


def _dynamic_shapes(dynamic_hw: bool) -> dict[str, dict[int, Any]]:
    dim = torch.export.Dim.DYNAMIC
    axes = {0: dim, 2: dim, 3: dim} if dynamic_hw else {0: dim}
    return {name: dict(axes) for name in INPUT_NAMES}


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's progress prints, warnings and library log lines (errors still raise)."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _trace(head: nn.Module, size: tuple[int, int], opset: int, dynamic_hw: bool):
    """Run the dynamo exporter on a sample batch of ``size`` (W, H) and return the ONNX ModelProto."""
    image, coords = _sample_inputs(size)
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            head,
            (image, coords),
            dynamo=True,
            opset_version=opset,
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_shapes=_dynamic_shapes(dynamic_hw),
            verbose=False,
        )
    return program.model_proto


def _metadata(model: nn.Module, meta: dict[str, Any], spec: InputSpec, dynamic: bool) -> dict:
    config = getattr(model, "config", None)
    return {
        "maskingnet.version": __version__,
        "maskingnet.config": json.dumps(config.to_dict() if config is not None else {}),
        "maskingnet.meta": json.dumps(meta, default=str),
        "maskingnet.input_size": json.dumps(list(spec.size) if spec.size else None),
        "maskingnet.dynamic_hw": json.dumps(dynamic),
        SPEC_KEY: spec.to_json(),
        "class_names": json.dumps(list(spec.class_names)),
        "inputs": INPUT_DESCRIPTION,
        "outputs": OUTPUT_DESCRIPTION,
    }


def _trace_with_fallback(
    head: nn.Module, spec: InputSpec, fixed: tuple[int, int] | None, opset: int, notes: list[str]
):
    """Dynamic height/width when ``fixed`` is None, else (or when the graph cannot be dynamic) fixed: at
    the size of the model's input spec."""
    if fixed is None:
        try:
            return _trace(head, DYNAMIC_SAMPLE_SIZE, opset, dynamic_hw=True), None
        except Exception as error:  # noqa: BLE001 - any exporter failure means "try a fixed size"
            if spec.size is None:
                raise ExportError(
                    f"dynamic export failed and the model's input spec has no size: {error}"
                ) from error
            fixed = spec.size
            notes.append(f"dynamic height/width not exportable ({type(error).__name__}); fixed at {fixed}")
    try:
        return _trace(head, fixed, opset, dynamic_hw=False), fixed
    except Exception as error:  # noqa: BLE001
        raise ExportError(f"export at size {fixed[0]}x{fixed[1]} failed: {error}") from error


def export_model(
    model: nn.Module,
    out: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    size: tuple[int, int] | None = None,
    *,
    check: bool = True,
    refiner: Refiner | None = None,
) -> ExportResult:
    """Write ``model`` (with its ``.meta``) as ONNX at ``out``, atomically, checked with ``onnx.checker``.
    ``refiner`` (the edge stage) travels in the metadata, so the ``.onnx`` file alone gives the same masks.

    ``size`` None: dynamic batch, height and width (a fixed size, the input spec's, if the graph does not
    allow dynamic height/width); ``size`` (W, H): fixed height and width, dynamic batch. The input spec is
    the one :func:`~maskingnet.models.checkpoint.model_spec` gives, as in the model's safetensors file.
    """
    onnx = check_exportable(opset)
    started = time.perf_counter()
    meta = dict(getattr(model, "meta", {}) or {})
    spec = model_spec(model, meta)
    notes: list[str] = []
    proto, fixed = _trace_with_fallback(ProbabilityHead(model.eval()).eval(), spec, size, opset, notes)
    actual_opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), opset)
    if actual_opset != opset:
        notes.append(f"exporter produced opset {actual_opset} (asked for {opset})")
    props = _metadata(model, meta, spec.with_size(fixed), dynamic=fixed is None)
    if refiner is not None:
        props[REFINER_KEY] = refiner.config.to_json()
        props[REFINER_WEIGHTS_KEY] = base64.b64encode(refiner_to_bytes(refiner)).decode("ascii")
    onnx.helper.set_model_props(proto, props)
    if check:
        try:
            onnx.checker.check_model(proto, full_check=True)
        except onnx.checker.ValidationError as error:
            raise ExportError(f"the exported graph fails onnx.checker: {error}") from error
    atomic_save(out, lambda tmp: onnx.save(proto, str(tmp)))
    return ExportResult(Path(out), actual_opset, fixed is None, fixed, time.perf_counter() - started, notes)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The maskingnet metadata of an exported file, decoded (config, meta, input_size, spec, ...)."""
    onnx = require_onnx()
    model = onnx.load(str(path), load_external_data=False)
    return decode_metadata({prop.key: prop.value for prop in model.metadata_props})


def decode_metadata(raw: dict[str, str]) -> dict[str, Any]:
    """ONNX string metadata -> values: ``maskingnet.*`` keys lose the prefix and are parsed as JSON."""
    decoded: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.removeprefix("maskingnet.")
        try:
            is_json = key.startswith("maskingnet.") or key == "class_names"
            decoded[name] = parse_json(value) if is_json else value
        except ValueError:
            decoded[name] = value
    return decoded
