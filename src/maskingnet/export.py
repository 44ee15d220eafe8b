"""ONNX export of any maskingnet checkpoint, and the ONNX Runtime backend that runs it.

The exported graph wraps the network so that it needs nothing from maskingnet at run time:

- inputs ``image`` ``(B, 3, H, W)`` float32, ImageNet-normalised RGB, and ``coords`` ``(B, 2, H, W)``
  float32, the photo's ``[X, Y]`` maps (``X = j / W - 0.5``, ``Y = i / H - 0.5``; for a whole photo,
  :func:`maskingnet.inference.whole_photo_coords`). Both are always inputs so every architecture has the same
  signature; networks without coordinate maps (``unet``, ``segnet``, ``arc1``) ignore ``coords``.
- output ``probability`` ``(B, H, W)`` float32: the softmax probability of class 1 ("car"), not logits.

Batch, height and width are dynamic by default (the network pads to its stride and crops back inside the
graph); ``size`` fixes height and width instead. The model config, the checkpoint's meta, the class names
and the I/O description are stored in the ONNX metadata, so :class:`OnnxBackend` rebuilds
``.config``/``.meta``/``.input_size`` from the file alone.

Export goes through ``torch.onnx.export(dynamo=True)`` (the legacy TorchScript exporter cannot export
``max_unpool2d``). That exporter emits opset 18 natively; lower opsets need a down-conversion that has no
adapter for ``Pad``, so 18 is the default and lower requests fail with a clear message.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from maskingnet.utils import atomic_save
from maskingnet.utils import parse_size as parse_image_size

DEFAULT_OPSET = 18
MIN_OPSET = 18
INPUT_NAMES = ("image", "coords")
OUTPUT_NAME = "probability"
CLASS_NAMES = ("background", "car")
OUTPUT_DESCRIPTION = "probability: (B, H, W) float32 softmax probability of class 1 (car)"
INPUT_DESCRIPTION = (
    "image: (B, 3, H, W) float32 ImageNet-normalised RGB; coords: (B, 2, H, W) float32 [X, Y] maps, "
    "X = j / W - 0.5, Y = i / H - 0.5 over the original photo"
)
# The trace sample for dynamic exports: not a multiple of any stride, so padding is traced as arithmetic.
DYNAMIC_SAMPLE_SIZE = (72, 56)

ONNX_EXTRA_HINT = "ONNX support is an optional extra: pip install 'maskingnet[onnx]'"


class ExportError(RuntimeError):
    """The checkpoint could not be exported (or the result failed its check)."""


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote."""

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


def parse_size(text: str | int | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"dynamic"``/None -> None (dynamic height and width), else :func:`maskingnet.utils.parse_size`."""
    if isinstance(text, str) and text.strip().lower() == "dynamic":
        return None
    return parse_image_size(text)


def _require_onnx():
    try:
        import onnx
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError as error:
        raise ExportError(f"{ONNX_EXTRA_HINT} ({error})") from error
    return onnx


def _load_for_export(checkpoint: str | os.PathLike | nn.Module) -> tuple[nn.Module, dict[str, Any]]:
    if isinstance(checkpoint, nn.Module):
        return checkpoint.eval(), dict(getattr(checkpoint, "meta", {}) or {})
    from maskingnet.models import load_model

    model = load_model(checkpoint, device="cpu")
    return model.eval(), dict(getattr(model, "meta", {}) or {})


def _sample_inputs(size: tuple[int, int], batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    from maskingnet.inference import whole_photo_coords

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


def _metadata(model: nn.Module, meta: dict[str, Any], dynamic: bool, size: tuple[int, int] | None) -> dict:
    from maskingnet import __version__

    config = getattr(model, "config", None)
    input_size = list(size) if size is not None else meta.get("input_size")
    return {
        "maskingnet.version": __version__,
        "maskingnet.config": json.dumps(config.to_dict() if config is not None else {}),
        "maskingnet.meta": json.dumps(meta, default=str),
        "maskingnet.input_size": json.dumps(input_size),
        "maskingnet.dynamic_hw": json.dumps(dynamic),
        "class_names": json.dumps(list(CLASS_NAMES)),
        "inputs": INPUT_DESCRIPTION,
        "outputs": OUTPUT_DESCRIPTION,
    }


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
    onnx = _require_onnx()
    if opset < MIN_OPSET:
        raise ExportError(
            f"opset {opset} is not supported: the dynamo exporter emits opset {MIN_OPSET} and there is no "
            f"down-converter for Pad; use --opset {MIN_OPSET} or newer"
        )
    started = time.perf_counter()
    model, meta = _load_for_export(checkpoint)
    head = ProbabilityHead(model).eval()
    fixed = parse_size(size)
    notes: list[str] = []
    if fixed is None:
        try:
            proto = _trace(head, DYNAMIC_SAMPLE_SIZE, opset, dynamic_hw=True)
        except Exception as error:  # noqa: BLE001 - any exporter failure means "try a fixed size"
            fallback = meta.get("input_size")
            if not fallback:
                raise ExportError(
                    f"dynamic export failed and the checkpoint has no input_size: {error}"
                ) from error
            fixed = (int(fallback[0]), int(fallback[1]))
            notes.append(f"dynamic height/width not exportable ({type(error).__name__}); fixed at {fixed}")
    if fixed is not None:
        try:
            proto = _trace(head, fixed, opset, dynamic_hw=False)
        except Exception as error:  # noqa: BLE001
            raise ExportError(f"export at size {fixed[0]}x{fixed[1]} failed: {error}") from error
    actual_opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), opset)
    if actual_opset != opset:
        notes.append(f"exporter produced opset {actual_opset} (asked for {opset})")
    onnx.helper.set_model_props(proto, _metadata(model, meta, fixed is None, fixed))
    if check:
        try:
            onnx.checker.check_model(proto, full_check=True)
        except onnx.checker.ValidationError as error:
            raise ExportError(f"the exported graph fails onnx.checker: {error}") from error
    atomic_save(out, lambda tmp: onnx.save(proto, str(tmp)))
    return ExportResult(
        path=Path(out),
        opset=actual_opset,
        dynamic=fixed is None,
        input_size=fixed,
        seconds=time.perf_counter() - started,
        notes=notes,
    )


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The maskingnet metadata of an exported file, decoded (config, meta, input_size, class_names...)."""
    onnx = _require_onnx()
    model = onnx.load(str(path), load_external_data=False)
    return _decode_metadata({prop.key: prop.value for prop in model.metadata_props})


def _decode_metadata(raw: dict[str, str]) -> dict[str, Any]:
    decoded: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.removeprefix("maskingnet.")
        try:
            is_json = key.startswith("maskingnet.") or key == "class_names"
            decoded[name] = json.loads(value) if is_json else value
        except json.JSONDecodeError:
            decoded[name] = value
    return decoded


def _open_session(path: Path, options, providers: list[str]):
    """An ONNX Runtime session for a maskingnet export; anything else is a ``CheckpointError`` (a
    ``ValueError`` whose text is ``"path: what is wrong"``, as for a bad checkpoint)."""
    import onnxruntime as ort

    from maskingnet.models import CheckpointError

    if not path.is_file():
        raise CheckpointError(path, "no such file")
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


class OnnxBackend:
    """The backend contract (see docs/DEVELOPING.md) on ONNX Runtime.

    ``backend(images (B,3,H,W), coords (B,2,H,W) | None) -> (B,H,W)`` float32 car probabilities as a CPU
    tensor; whole-photo coordinate maps are built when ``coords`` is None. ``path`` is an exported ``.onnx``
    file; any other path is taken as a checkpoint and exported first (dynamic size) into a temporary folder
    that lives as long as the backend.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        device: str | torch.device = "cpu",
        precision: str = "auto",
        *,
        threads: int | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as error:
            raise ExportError(f"{ONNX_EXTRA_HINT} ({error})") from error
        if precision not in ("auto", "fp32"):
            raise ExportError(f"precision {precision!r}: the ONNX Runtime backend runs fp32 only")
        self._tmpdir = None
        path = Path(path)
        if path.suffix.lower() != ".onnx":
            self._tmpdir = tempfile.TemporaryDirectory(prefix="maskingnet-onnx-")
            path = export_onnx(path, Path(self._tmpdir.name) / f"{path.stem}.onnx").path
        self.path = path
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self.session = _open_session(path, options, _providers(device))
        provider = self.session.get_providers()[0]
        self.device = torch.device("cuda" if provider == "CUDAExecutionProvider" else "cpu")
        self.precision = "fp32"
        self.metadata = _decode_metadata(self.session.get_modelmeta().custom_metadata_map)
        self.meta: dict[str, Any] = dict(self.metadata.get("meta") or {})
        self.config = self._config()
        self.class_names = tuple(self.metadata.get("class_names") or CLASS_NAMES)
        image_shape = self.session.get_inputs()[0].shape
        self._fixed_batch = image_shape[0] if isinstance(image_shape[0], int) else None
        self._fixed_hw = (
            (image_shape[3], image_shape[2]) if all(isinstance(d, int) for d in image_shape[2:]) else None
        )
        input_size = self._fixed_hw or self.metadata.get("input_size") or self.meta.get("input_size")
        self.input_size: tuple[int, int] | None = tuple(int(v) for v in input_size) if input_size else None
        self._input_names = [item.name for item in self.session.get_inputs()]

    def _config(self):
        data = self.metadata.get("config") or {}
        if not data:
            return None
        from maskingnet.models import ModelConfig

        return ModelConfig.from_dict(data)

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
            from maskingnet.inference import whole_photo_coords

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


def _as_float32_array(value: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().to("cpu", torch.float32).numpy()
    return np.ascontiguousarray(value, dtype=np.float32)


def benchmark_backends(
    checkpoint: str | os.PathLike | nn.Module,
    size: tuple[int, int] = (512, 512),
    batch: int = 1,
    repeats: int = 3,
    precision: str = "auto",
    threads: int | None = None,
) -> dict[str, Any]:
    """ONNX Runtime (fp32) against the torch fast path on this CPU, side by side on the same weights.

    Exports the model to a temporary file, runs both backends on the same random batch (``size`` = (W, H)),
    and reports the best of ``repeats`` timings (taking turns) after one warm-up call, in ms per image, plus
    the largest
    probability difference between the two.
    """
    from maskingnet.inference import TorchBackend

    model, _ = _load_for_export(checkpoint)
    torch_backend = TorchBackend(model, device="cpu", precision=precision)
    width, height = size
    images = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory(prefix="maskingnet-bench-onnx-") as tmp:
        export = export_onnx(model, Path(tmp) / "model.onnx")
        onnx_backend = OnnxBackend(export.path, threads=threads)
        backends = {"torch": torch_backend, "onnxruntime": onnx_backend}
        outputs = {name: backend(images) for name, backend in backends.items()}
        best = _best_seconds_interleaved(backends, images, repeats)
    ms = {name: seconds * 1000 / batch for name, seconds in best.items()}
    faster = min(ms, key=ms.get)
    return {
        "model": getattr(getattr(model, "config", None), "name", "model"),
        "size": [width, height],
        "batch": batch,
        "torch_precision": torch_backend.precision,
        "torch_ms_per_image": round(ms["torch"], 2),
        "onnxruntime_ms_per_image": round(ms["onnxruntime"], 2),
        "faster": faster,
        "speedup_of_faster": round(max(ms.values()) / min(ms.values()), 2),
        "max_abs_probability_diff": float((outputs["torch"] - outputs["onnxruntime"]).abs().max()),
        "export_seconds": round(export.seconds, 1),
        "torch_threads": torch.get_num_threads(),
    }


def _best_seconds_interleaved(
    backends: dict[str, Any], images: torch.Tensor, repeats: int
) -> dict[str, float]:
    """Best time of each backend, taking turns, so a busy spell on the machine hits both alike."""
    best = {name: float("inf") for name in backends}
    for _ in range(max(1, repeats)):
        for name, backend in backends.items():
            started = time.perf_counter()
            backend(images)
            best[name] = min(best[name], time.perf_counter() - started)
    return best
