"""maskingnet: cut cars out of photographs with MaskingNet and the networks it was compared with.

Public names are imported lazily so that ``import maskingnet`` (and ``maskingnet --help``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "create_model": "maskingnet.models",
    "list_models": "maskingnet.models",
    "save_model": "maskingnet.models",
    "load_model": "maskingnet.models",
    "rle_encode": "maskingnet.data.rle",
    "rle_decode": "maskingnet.data.rle",
    "Predictor": "maskingnet.inference",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'maskingnet' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
