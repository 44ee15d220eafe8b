"""Model files: safetensors weights with the model's config, a meta dict and the input spec
(:class:`maskingnet.spec.InputSpec`) as JSON in the file's metadata.

The file alone rebuilds its model, and loading never unpickles: anything that is not a well-formed
safetensors file (a ``torch.save`` pickle or zip renamed ``.safetensors``, a truncated file) is refused
with :class:`CheckpointError` before any tensor is read.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from maskingnet.errors import MaskingnetError
from maskingnet.spec import SPEC_KEY, InputSpec, read_spec
from maskingnet.utils import atomic_save

from .encoder_decoder import EncoderDecoder, ModelConfig
from .refiner import REFINER_KEY, TENSOR_PREFIX, Refiner, RefinerConfig, refiner_tensors

CONFIG_KEY = "maskingnet.config"
META_KEY = "maskingnet.meta"
FORMAT_KEY = "maskingnet.format"
FORMAT_VERSION = "1"
_MAX_HEADER = 100 * 1024 * 1024
_PICKLE_PREFIXES = (b"PK\x03\x04", b"\x80")


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
    """The :class:`ModelConfig` and meta dict stored in a model file (no tensors are read)."""
    metadata = read_header(path)
    if CONFIG_KEY not in metadata:
        raise CheckpointError(path, "has no maskingnet model config in its metadata")
    try:
        config = ModelConfig.from_dict(json.loads(metadata[CONFIG_KEY]))
        meta = json.loads(metadata.get(META_KEY, "{}"))
    except (ValueError, TypeError) as err:
        raise CheckpointError(path, f"has an unusable model config ({err})") from err
    return config, meta


def load_spec(path: str | os.PathLike) -> InputSpec:
    """The input spec stored in a model file (or implied by its meta, for files older than the spec)."""
    metadata = read_header(path)
    return read_spec(metadata, _meta_of(path, metadata))


def _meta_of(path: str | os.PathLike, metadata: dict[str, str]) -> dict[str, Any]:
    try:
        return json.loads(metadata.get(META_KEY, "{}"))
    except ValueError as err:
        raise CheckpointError(path, f"has an unusable meta ({err})") from err


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> EncoderDecoder:
    """Rebuild the model saved by :func:`save_model`, in eval mode on ``device``, with ``.meta`` and
    ``.spec``."""
    config, meta = read_config(path)
    model = EncoderDecoder(config)
    state = {}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            for key in handle.keys():
                if not key.startswith(TENSOR_PREFIX):
                    state[key] = handle.get_tensor(key)
    except Exception as err:
        raise CheckpointError(path, f"cannot read its tensors ({err})") from err
    expected = model.state_dict()
    mismatch = _describe_mismatch(expected, state)
    if mismatch:
        raise CheckpointError(path, f"weights do not fit its config ({mismatch})")
    model.load_state_dict(state, strict=True)
    model.meta = meta
    model.spec = load_spec(path)
    return model.to(device).eval()


def _describe_mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> str:
    """A short account of missing, unexpected and wrongly shaped tensors ("" when they fit)."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(k for k in set(expected) & set(found) if expected[k].shape != found[k].shape)
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
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
        config = RefinerConfig.from_dict(json.loads(metadata[REFINER_KEY]))
    except (ValueError, TypeError) as err:
        raise CheckpointError(path, f"has unusable refiner settings ({err})") from err
    refiner = Refiner(config)
    expected = refiner.state_dict()
    found: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            for key in handle.keys():
                if key.startswith(TENSOR_PREFIX):
                    found[key[len(TENSOR_PREFIX):]] = handle.get_tensor(key)
    except Exception as err:
        raise CheckpointError(path, f"cannot read its refiner tensors ({err})") from err
    mismatch = _describe_mismatch(expected, found)
    if mismatch:
        raise CheckpointError(path, f"refiner weights do not fit its settings ({mismatch})")
    refiner.load_state_dict(found, strict=True)
    return refiner.to(device, memory_format=torch.channels_last).eval()
