"""Model files: safetensors weights with the model's config, a meta dict and the input spec
(:class:`maskingnet.models.spec.InputSpec`) as JSON in the file's metadata.

The file alone rebuilds its model, and loading never unpickles: anything that is not a well-formed
safetensors file (a ``torch.save`` pickle or zip renamed ``.safetensors``, a truncated file) is refused
with :class:`CheckpointError` before any tensor is read.

Loading checks before it allocates: the header's config is bounded (levels, convolutions per stage), the
network is built on the ``meta`` device (no memory, whatever widths the config asks for), every tensor's
shape and dtype in the file is compared with it from the header alone, the input spec is checked
(:mod:`maskingnet.models.spec`), and only then are the tensors read, straight into the model (no second copy).
A file whose config asks for a network its tensors do not hold costs milliseconds and one line.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from maskingnet.errors import MaskingnetError
from maskingnet.models.spec import SPEC_KEY, InputSpec, SpecError, read_spec
from maskingnet.utils import atomic_save, parse_json

from .encoder_decoder import EncoderDecoder, ModelConfig
from .refiner import REFINER_KEY, TENSOR_PREFIX, Refiner, RefinerConfig, refiner_tensors

CONFIG_KEY = "maskingnet.config"
META_KEY = "maskingnet.meta"
FORMAT_KEY = "maskingnet.format"
FORMAT_VERSION = "1"
_MAX_HEADER = 100 * 1024 * 1024
_PICKLE_PREFIXES = (b"PK\x03\x04", b"\x80")
MAX_LEVELS = 8
MAX_CONVS_PER_STAGE = 8
_SAFETENSORS_DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.bool: "BOOL",
}


class CheckpointError(MaskingnetError, ValueError):
    """A file that cannot be loaded as a maskingnet model; ``str(e) == f"{path}: {reason}"``."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def save_model(
    model: nn.Module,
    path: str | os.PathLike,
    meta: dict[str, Any] | None = None,
    refiner: Refiner | None = None,
) -> Path:
    """Write ``model``'s weights and BatchNorm statistics, its config, ``meta`` (JSON-able) and input spec
    atomically. The spec is the one ``meta`` implies when it records an ``input_size``, else the model's."""
    model = unwrap_model(model)
    config = getattr(model, "config", None)
    if not isinstance(config, ModelConfig):
        raise TypeError("save_model needs a maskingnet model (with a ModelConfig in .config)")
    if meta is None:
        meta = dict(getattr(model, "meta", {}) or {})
    tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()}
    metadata = {
        FORMAT_KEY: FORMAT_VERSION,
        CONFIG_KEY: json.dumps(config.to_dict()),
        META_KEY: json.dumps(meta, default=str),
        SPEC_KEY: model_spec(model, meta).to_json(),
    }
    if refiner is not None:
        tensors.update(refiner_tensors(refiner))
        metadata[REFINER_KEY] = refiner.config.to_json()
    path = Path(path)
    atomic_save(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    return path


def model_spec(model: nn.Module, meta: dict[str, Any] | None = None) -> InputSpec:
    """The input spec of ``model``: implied by ``meta`` when it records an ``input_size``, else the spec
    the model was loaded with, else the default (any size)."""
    meta = meta if meta is not None else getattr(model, "meta", None)
    if (meta or {}).get("input_size") or getattr(model, "spec", None) is None:
        return InputSpec.from_meta(meta)
    return model.spec


def unwrap_model(model: nn.Module) -> nn.Module:
    """The maskingnet model inside DistributedDataParallel (``.module``) and ``torch.compile``
    (``._orig_mod``) wrappers, so files hold clean parameter names."""
    while True:
        inner = model._modules.get("_orig_mod") or model._modules.get("module")
        if inner is None:
            return model
        model = inner


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    """A plausible little-endian header length followed by the JSON header's ``{``.

    Checked before the pickle magic: a header length whose low byte is 0x80 is valid safetensors.
    """
    if len(head) < 9 or head[8:9] != b"{":
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return header_len <= min(_MAX_HEADER, size - 8)


def read_header(path: str | os.PathLike) -> dict[str, str]:
    """The safetensors ``__metadata__`` of ``path``, after checking it is a safetensors file at all."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(9)
    except OSError as err:
        raise CheckpointError(path, f"cannot read ({err.strerror or err})") from err
    if not _looks_like_safetensors(head, size):
        if head.startswith(_PICKLE_PREFIXES):
            reason = "is a pickle / torch.save file, not safetensors; refusing to unpickle it"
            raise CheckpointError(path, reason)
        if len(head) < 9:
            raise CheckpointError(path, f"is not a safetensors file ({size} bytes)")
        raise CheckpointError(path, "is not a safetensors file (bad header)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as err:
        raise CheckpointError(path, f"is not a valid safetensors file ({err})") from err


def read_config(path: str | os.PathLike) -> tuple[ModelConfig, dict[str, Any]]:
    """The :class:`ModelConfig` and meta dict stored in a model file (no tensors are read); a config past
    :data:`MAX_LEVELS` levels or :data:`MAX_CONVS_PER_STAGE` convolutions a stage is refused."""
    metadata = read_header(path)
    if CONFIG_KEY not in metadata:
        raise CheckpointError(path, "has no maskingnet model config in its metadata")
    try:
        config = ModelConfig.from_dict(parse_json(metadata[CONFIG_KEY]))
    except (ValueError, TypeError, AttributeError) as err:
        raise CheckpointError(path, f"has an unusable model config ({err})") from err
    _check_config_size(path, config)
    return config, _meta_of(path, metadata)


def _check_config_size(path: str | os.PathLike, config: ModelConfig) -> None:
    """Refuse configs whose mere structure is out of proportion (even the meta device builds every layer)."""
    stages = config.encoder + config.decoder
    if len(config.encoder) > MAX_LEVELS or max(len(stage) for stage in stages) > MAX_CONVS_PER_STAGE:
        raise CheckpointError(
            path,
            f"has an unusable model config ({len(config.encoder)} levels, up to "
            f"{max(len(stage) for stage in stages)} convolutions a stage; at most {MAX_LEVELS} and "
            f"{MAX_CONVS_PER_STAGE})",
        )


def load_spec(path: str | os.PathLike) -> InputSpec:
    """The input spec stored in a model file (or implied by its meta, for files older than the spec);
    out-of-range values (an input size past :data:`maskingnet.models.spec.MAX_INPUT_SIDE`) are refused."""
    metadata = read_header(path)
    try:
        return read_spec(metadata, _meta_of(path, metadata))
    except SpecError as err:
        raise CheckpointError(path, f"has an unusable input spec ({err})") from err


def _meta_of(path: str | os.PathLike, metadata: dict[str, str]) -> dict[str, Any]:
    try:
        meta = parse_json(metadata.get(META_KEY, "{}"))
    except ValueError as err:
        raise CheckpointError(path, f"has an unusable meta ({err})") from err
    if not isinstance(meta, dict):
        raise CheckpointError(path, f"has an unusable meta (a JSON {type(meta).__name__}, not an object)")
    return meta


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> EncoderDecoder:
    """Rebuild the model saved by :func:`save_model`, in eval mode on ``device``, with ``.meta`` and
    ``.spec``. Everything is checked against the header before any tensor is read (module docstring)."""
    config, meta = read_config(path)
    spec = load_spec(path)
    with torch.device("meta"):
        model = EncoderDecoder(config, init_weights=False)
    misfit = "weights do not fit its config"
    state = read_checked_tensors(path, model.state_dict(), _is_network_tensor, misfit)
    model.load_state_dict(state, strict=True, assign=True)
    model.meta = meta
    model.spec = spec
    return model.to(device).eval()


def _is_network_tensor(key: str) -> bool:
    """Whether a tensor in a model file belongs to the network (the refiner's are prefixed apart)."""
    return not key.startswith(TENSOR_PREFIX)


def read_checked_tensors(
    path: str | os.PathLike,
    expected: dict[str, torch.Tensor],
    wanted: Callable[[str], bool],
    misfit: str,
    prefix: str = "",
) -> dict[str, torch.Tensor]:
    """The tensors of ``path`` whose names pass ``wanted`` (``prefix`` cut off), read only after their
    names, shapes and dtypes, taken from the header, match ``expected`` (e.g. a ``meta``-device state dict);
    otherwise ``CheckpointError(path, f"{misfit} (...)")`` naming what differs."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            names = {key[len(prefix) :]: key for key in handle.keys() if wanted(key)}
            found = {name: _header_entry(handle, key) for name, key in names.items()}
            mismatch = _describe_mismatch(expected, found)
            if mismatch:
                raise CheckpointError(path, f"{misfit} ({mismatch})")
            tensors = {name: handle.get_tensor(key) for name, key in names.items()}
    except CheckpointError:
        raise
    except Exception as err:
        raise CheckpointError(path, f"cannot read its tensors ({err})") from err
    _refuse_non_finite(path, tensors, prefix)
    return tensors


def _refuse_non_finite(path: str | os.PathLike, tensors: dict[str, torch.Tensor], prefix: str) -> None:
    """NaN or infinite weights make every answer NaN: an empty mask or a fully transparent cut-out that
    looks like a result. One pass over the weights (a few milliseconds for the bundled model)."""
    bad = [
        name
        for name, tensor in tensors.items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        names = ", ".join(prefix + name for name in bad[:3])
        raise CheckpointError(path, f"has NaN or infinite weights ({names}{more})")


def _header_entry(handle: Any, key: str) -> tuple[tuple[int, ...], str]:
    """(shape, safetensors dtype name) of one tensor, from the header (no data read)."""
    view = handle.get_slice(key)
    return tuple(view.get_shape()), str(view.get_dtype())


def _describe_mismatch(
    expected: dict[str, torch.Tensor], found: dict[str, tuple[tuple[int, ...], str]]
) -> str:
    """A short account of missing, unexpected, wrongly shaped and wrongly typed tensors ("" when they
    fit); ``found`` holds (shape, safetensors dtype name) per name."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    common = sorted(set(expected) & set(found))
    shapes = [k for k in common if tuple(expected[k].shape) != found[k][0]]
    dtypes = [k for k in common if _SAFETENSORS_DTYPES.get(expected[k].dtype, "?") != found[k][1]]
    parts = []
    groups = {"missing": missing, "unexpected": unexpected, "wrong shape": shapes, "wrong dtype": dtypes}
    for label, keys in groups.items():
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            parts.append(f"{label}: {', '.join(keys[:3])}{more}")
    return "; ".join(parts)


def attach_refiner(model_path: str | os.PathLike, refiner: Refiner, out: str | os.PathLike) -> Path:
    """Write ``out``: the model file ``model_path`` with ``refiner`` (the edge stage) stored inside it.

    Any refiner already in the file is replaced. ``out`` may be ``model_path`` itself (written atomically).
    """
    metadata = read_header(model_path)
    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(model_path), framework="pt", device="cpu") as handle:
        for key in handle.keys():
            if not key.startswith(TENSOR_PREFIX):
                tensors[key] = handle.get_tensor(key)
    tensors.update(refiner_tensors(refiner))
    metadata[REFINER_KEY] = refiner.config.to_json()
    out = Path(out)
    atomic_save(out, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    return out


def load_refiner(path: str | os.PathLike, device: str | torch.device = "cpu") -> Refiner | None:
    """The edge refiner stored in a model file by :func:`attach_refiner`, or None when it has none."""
    metadata = read_header(path)
    if REFINER_KEY not in metadata:
        return None
    try:
        config = RefinerConfig.from_dict(parse_json(metadata[REFINER_KEY]))
    except (ValueError, TypeError) as err:
        raise CheckpointError(path, f"has unusable refiner settings ({err})") from err
    with torch.device("meta"):
        refiner = Refiner(config)
    found = read_checked_tensors(
        path,
        refiner.state_dict(),
        lambda key: key.startswith(TENSOR_PREFIX),
        "refiner weights do not fit its settings",
        prefix=TENSOR_PREFIX,
    )
    refiner.load_state_dict(found, strict=True, assign=True)
    return refiner.to(device, memory_format=torch.channels_last).eval()
