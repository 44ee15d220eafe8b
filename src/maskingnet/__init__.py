"""maskingnet: cut cars out of photographs with MaskingNet and the networks it was compared with.

Public names are imported lazily so that ``import maskingnet`` (and ``maskingnet --help``) stays fast.
"""

from __future__ import annotations

from maskingnet.utils import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "create_model": "maskingnet.models",
    "list_models": "maskingnet.models",
    "save_model": "maskingnet.models",
    "load_model": "maskingnet.models",
    "rle_encode": "maskingnet.data.rle",
    "rle_decode": "maskingnet.data.rle",
    "Predictor": "maskingnet.inference",
    "ModelSettings": "maskingnet.inference",
    "remove": "maskingnet.inference.remove_background",
    "new_session": "maskingnet.inference.remove_background",
}

__all__ = ["__version__", *_EXPORTS]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
