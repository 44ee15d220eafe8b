"""Backends: a trained network behind one call, ``backend(images, coords) -> car probabilities``.

A backend takes a batch of normalised photos ``(B, 3, H, W)`` float32 and their coordinate maps
``(B, 2, H, W)`` (None: the whole input's maps) and returns ``(B, H, W)`` float32 car probabilities on the
CPU. It also says what it is: ``.spec`` (the :class:`~maskingnet.models.spec.InputSpec` stored with the
weights), ``.config`` (the :class:`~maskingnet.models.ModelConfig`, when known), ``.meta``, ``.device``,
``.precision``. :class:`TorchBackend` runs PyTorch (the CPU fast path of :mod:`.fastpath` by default),
:class:`OnnxBackend` ONNX Runtime; :func:`load_backend` picks one for a file.
"""

from __future__ import annotations

import base64
import copy
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from maskingnet.data.coords import whole_photo_coords
from maskingnet.models import CheckpointError, ModelConfig, load_model, model_spec, resolve_model
from maskingnet.models.checkpoint import load_refiner
from maskingnet.models.onnx import (
    CLASS_NAMES,
    INPUT_NAMES,
    ONNX_EXTRA_HINT,
    OUTPUT_NAME,
    REFINER_WEIGHTS_KEY,
    ExportError,
    decode_metadata,
    export_model,
)
from maskingnet.models.refiner import REFINER_KEY, Refiner, refiner_from_bytes
from maskingnet.models.spec import SPEC_KEY, InputSpec, read_spec
from maskingnet.runtime import DTYPES, resolve_device, resolve_precision

from .fastpath import input_dtype, prepare_model
from .quantize import Batch, int8_model

BACKENDS = ("auto", "torch", "onnxruntime")


@runtime_checkable
class Backend(Protocol):
    """What every backend offers (see the module docstring)."""

    spec: InputSpec
    config: ModelConfig | None
    meta: dict[str, Any]
    device: torch.device
    precision: str

    def __call__(self, images: torch.Tensor, coords: torch.Tensor | None = None) -> torch.Tensor: ...


class TorchBackend:
    """A PyTorch model as a backend.

    ``fast=True`` (default) runs the fast path: BN folded, the precision's dtype for weights and
    activations, channels-last. ``fast=False`` is the plain eager model under autocast (the reference).
    ``precision="int8"`` (x86 CPUs) quantizes the conv stacks (:mod:`.quantize`), calibrated on
    ``calibration`` batches of ``(images, coords)``, by default synthetic car photos rendered at load.
    """

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "auto",
        precision: str = "auto",
        *,
        fast: bool = True,
        refiner: Refiner | None = None,
        calibration: Iterable[Batch] | None = None,
    ) -> None:
        self.refiner = refiner
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.config = getattr(model, "config", None)
        self.meta: dict[str, Any] = dict(getattr(model, "meta", {}) or {})
        self.spec = model_spec(model)
        self.fast = fast or self.precision == "int8"
        if self.precision == "int8":
            self.model = int8_model(model, self.spec, calibration)
        elif fast:
            self.model = prepare_model(model, self.device, self.precision)
        else:
            self.model = copy.deepcopy(model).eval().to(self.device)

    @property
    def input_size(self) -> tuple[int, int] | None:
        """The spec's input size (W, H), if the checkpoint says."""
        return self.spec.size

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the network's float parts (fp32 around the int8 conv stacks)."""
        return DTYPES.get(self.precision, torch.float32)

    def logits(self, images: torch.Tensor, coords: torch.Tensor | None = None) -> torch.Tensor:
        """Raw model output on the backend's device (the dtype the path computes in)."""
        images = images.to(self.device, non_blocking=True)
        coords = coords.to(self.device, non_blocking=True) if coords is not None else None
        with torch.inference_mode():
            if self.fast:
                memory_format = torch.channels_last if self.device.type in ("cpu", "cuda") else None
                dtype = input_dtype(self.model, self.dtype)
                images = images.to(dtype=dtype)
                if memory_format is not None:
                    images = images.contiguous(memory_format=memory_format)
                coords = coords.to(dtype=dtype) if coords is not None else None
                return self.model(images, coords)
            with self._autocast():
                return self.model(images, coords)

    def _autocast(self):
        if self.precision == "fp32" or self.device.type not in ("cpu", "cuda", "mps"):
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.dtype)

    def __call__(self, images: torch.Tensor, coords: torch.Tensor | None = None) -> torch.Tensor:
        with torch.inference_mode():
            return logits_to_probs(self.logits(images, coords))


def logits_to_probs(logits: torch.Tensor) -> torch.Tensor:
    """Class-1 probability as float32 on the CPU: softmax over classes (sigmoid for one-class output)."""
    logits = logits.float()
    if logits.shape[1] == 1:
        probs = torch.sigmoid(logits[:, 0])
    else:
        probs = torch.softmax(logits, dim=1)[:, 1]
    return probs.contiguous().cpu()


class OnnxBackend:
    """An exported ``.onnx`` file (:mod:`maskingnet.models.onnx`) on ONNX Runtime, fp32.

    Any other ``path`` is taken as a checkpoint and exported first (dynamic size) into a temporary folder
    that lives as long as the backend. Whole-photo coordinate maps are built when ``coords`` is None.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        device: str | torch.device = "cpu",
        precision: str = "auto",
        *,
        threads: int | None = None,
    ) -> None:
        ort = _require_onnxruntime()
        if precision not in ("auto", "fp32"):
            raise ExportError(f"precision {precision!r}: the ONNX Runtime backend runs fp32 only")
        self._tmpdir = None
        path = Path(path)
        if path.suffix.lower() != ".onnx":
            self._tmpdir = tempfile.TemporaryDirectory(prefix="maskingnet-onnx-")
            out = Path(self._tmpdir.name) / f"{path.stem}.onnx"
            path = export_model(load_model(path), out, refiner=load_refiner(path)).path
        self.path = path
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self.session = _open_session(path, options, _providers(device))
        provider = self.session.get_providers()[0]
        self.device = torch.device("cuda" if provider == "CUDAExecutionProvider" else "cpu")
        self.precision = "fp32"
        raw = self.session.get_modelmeta().custom_metadata_map
        self.metadata, self.meta, self.config = _onnx_fields(path, raw)
        image_shape = self.session.get_inputs()[0].shape
        self._fixed_batch = image_shape[0] if isinstance(image_shape[0], int) else None
        self._fixed_hw = (
            (image_shape[3], image_shape[2]) if all(isinstance(d, int) for d in image_shape[2:]) else None
        )
        self.spec = _onnx_spec(raw, self.metadata, self.meta).with_size(self._fixed_hw)
        self.refiner = _onnx_refiner(path, raw)
        self.class_names = tuple(self.spec.class_names or CLASS_NAMES)
        self._input_names = [item.name for item in self.session.get_inputs()]

    @property
    def input_size(self) -> tuple[int, int] | None:
        return self.spec.size

    @property
    def name(self) -> str:
        return getattr(self.config, "name", None) or self.path.stem

    def __call__(self, images: torch.Tensor | np.ndarray, coords: torch.Tensor | np.ndarray | None = None):
        images_np = _as_float32_array(images)
        batch, _, height, width = images_np.shape
        if self._fixed_hw is not None and self._fixed_hw != (width, height):
            fixed_w, fixed_h = self._fixed_hw
            raise ValueError(f"{self.path}: exported for {fixed_w}x{fixed_h} inputs, got {width}x{height}")
        if coords is None:
            coords = whole_photo_coords(batch, height, width)
        coords_np = _as_float32_array(coords)
        chunk = self._fixed_batch or batch
        image_name, coords_name = self._input_names
        outputs = [
            self.session.run(
                [OUTPUT_NAME], {image_name: images_np[i : i + chunk], coords_name: coords_np[i : i + chunk]}
            )[0]
            for i in range(0, batch, chunk)
        ]
        return torch.from_numpy(np.concatenate(outputs) if len(outputs) > 1 else outputs[0])

    def __repr__(self) -> str:
        return f"OnnxBackend({str(self.path)!r}, device={self.device}, input_size={self.input_size})"


def _onnx_fields(
    path: Path, raw: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any], ModelConfig | None]:
    """(metadata, meta, config) of an export, every field checked as a checkpoint's are; a file whose
    fields do not hold is a ``CheckpointError`` in one line."""
    try:
        metadata = decode_metadata(raw)
        meta = metadata.get("meta") or {}
        if not isinstance(meta, dict):
            raise ValueError(f"meta is a JSON {type(meta).__name__}, not an object")
        config = ModelConfig.from_dict(metadata["config"]) if metadata.get("config") else None
    except (ValueError, TypeError) as error:
        raise CheckpointError(path, f"has unusable maskingnet metadata ({error})") from None
    return metadata, dict(meta), config


def _onnx_spec(raw: dict[str, str], metadata: dict[str, Any], meta: dict[str, Any]) -> InputSpec:
    """The stored spec; for exports older than the spec, the one their input_size and class names give."""
    if SPEC_KEY in raw:
        return read_spec(raw, meta)
    size = metadata.get("input_size") or meta.get("input_size")
    spec = InputSpec(size=tuple(size) if size else None)
    names = metadata.get("class_names")
    return InputSpec(size=spec.size, class_names=tuple(names)) if names else spec


def _onnx_refiner(path: Path, raw: dict[str, str]) -> Refiner | None:
    """The edge refiner an export carries in its metadata (None when it has none)."""
    if REFINER_KEY not in raw:
        return None
    try:
        data = base64.b64decode(raw.get(REFINER_WEIGHTS_KEY, ""), validate=True)
        return refiner_from_bytes(raw[REFINER_KEY], data)
    except ValueError as error:
        raise CheckpointError(path, f"has an unusable edge refiner ({error})") from None


def _require_onnxruntime():
    try:
        import onnxruntime
    except ImportError as error:
        raise ExportError(f"{ONNX_EXTRA_HINT} ({error})") from error
    return onnxruntime


def _open_session(path: Path, options, providers: list[str]):
    """An ONNX Runtime session for a maskingnet export, its graph checked first
    (:func:`maskingnet.inference.onnx_graph.graph_problem`); anything else is a ``CheckpointError``."""
    import onnxruntime as ort

    from maskingnet.inference.onnx_graph import graph_problem

    if not path.is_file():
        raise CheckpointError(path, "no such file")
    problem = graph_problem(path)
    if problem:
        raise CheckpointError(path, problem)
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as error:  # noqa: BLE001 - onnxruntime raises several unrelated exception types
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(path, f"not a loadable ONNX model ({reason})") from None
    names = [item.name for item in session.get_inputs()]
    outputs = [item.name for item in session.get_outputs()]
    if names != list(INPUT_NAMES) or OUTPUT_NAME not in outputs:
        raise CheckpointError(
            path,
            f"not a maskingnet export: inputs {names}, outputs {outputs} (expected image, coords -> "
            "probability)",
        )
    return session


def _providers(device: str | torch.device) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = str(device)
    if wanted in ("auto", "cuda") or wanted.startswith("cuda"):
        if "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if wanted != "auto":
            raise ExportError(f"device {wanted!r}: this onnxruntime has no CUDAExecutionProvider")
    return ["CPUExecutionProvider"]


def _as_float32_array(value: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().to("cpu", torch.float32).numpy()
    return np.ascontiguousarray(value, dtype=np.float32)


def load_backend(
    path: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    precision: str = "auto",
    backend: str = "auto",
) -> TorchBackend | OnnxBackend:
    """A backend for a file or a bundled model's name (None: the default bundled model): ``.onnx`` files
    or ``backend="onnxruntime"`` give :class:`OnnxBackend`,
    everything else a :class:`TorchBackend` on the loaded checkpoint."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    path = resolve_model(path)
    if backend == "onnxruntime" or (backend == "auto" and path.suffix.lower() == ".onnx"):
        if precision == "int8":
            raise ExportError("precision int8 runs on the torch backend: give the .safetensors checkpoint")
        return OnnxBackend(path, device=device)
    model = load_model(path, device="cpu")
    return TorchBackend(model, device=device, precision=precision, refiner=load_refiner(path))


def make_backend(
    checkpoint: Any, device: str = "auto", precision: str = "auto", backend: str = "auto"
) -> Backend:
    """A backend from a file path, a loaded model or an existing backend (returned as it is)."""
    if isinstance(checkpoint, nn.Module):
        return TorchBackend(checkpoint, device=device, precision=precision)
    if callable(checkpoint) and hasattr(checkpoint, "spec"):
        return checkpoint
    return load_backend(checkpoint, device=device, precision=precision, backend=backend)
