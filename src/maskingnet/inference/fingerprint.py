"""What made an output: the model and every setting that changes its pixels, as a short fingerprint.

``predict`` records the fingerprint of each photo's outputs in its manifest, ``submit`` the one of a finished
submission, so that a re-run skips only work done by the same model with the same settings, and says in one
line what changed when it redoes the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from maskingnet.errors import MaskingnetError
from maskingnet.models.bundled import file_sha256, resolve_model


def model_identity(checkpoint: Any) -> dict[str, Any]:
    """The model by content: a file's name and the SHA-256 of its bytes (another checkpoint, or the same
    name retrained, is another model). A model given as a Python object is named by its type and ``id``, so
    it matches only itself in this process. A bundled model's name (None: the default one) is its file."""
    if checkpoint is None or (isinstance(checkpoint, str) and not Path(checkpoint).is_file()):
        with contextlib.suppress(MaskingnetError, ValueError, OSError):
            checkpoint = resolve_model(checkpoint)
    if isinstance(checkpoint, (str, os.PathLike)) and Path(checkpoint).is_file():
        path = Path(checkpoint).resolve()
        return {"model": path.name, "model_sha256": file_sha256(path)}
    return {"model": f"{type(checkpoint).__name__} object {id(checkpoint):x}"}


def fingerprint(settings: dict[str, Any]) -> str:
    """12 hex digits that change whenever any value of ``settings`` (JSON-able) does."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _shown(key: str, value: Any) -> str:
    if key.endswith("sha256") and isinstance(value, str):
        return value[:12]
    return "none" if value is None else json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def describe_changes(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """``"threshold 0.5 -> 0.3, soft_edges False -> True"``: the settings that differ, in key order; an empty
    string when none does (or nothing is known of ``old``)."""
    if not old:
        return ""
    keys = sorted(set(old) | set(new))
    return ", ".join(
        f"{key} {_shown(key, old.get(key))} -> {_shown(key, new.get(key))}"
        for key in keys
        if old.get(key) != new.get(key)
    )
