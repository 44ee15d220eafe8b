"""What an ``.onnx`` file may hold before ONNX Runtime opens it: weights that are numbers, and no tensor
of a size fixed in the graph larger than :data:`MAX_STATIC_BYTES`.

An ONNX file is a program: a ``ConstantOfShape`` node with the constant shape [40000, 40000] made ONNX
Runtime allocate 6.4 GB for a file of a few hundred bytes, whatever photo came in. Shapes are inferred
from the graph alone (``onnx.shape_inference`` with data propagation, so shapes computed from constants
count); tensors whose size follows the photo (dynamic height and width) are bounded by the photo.
NaN or infinite weights would make every answer NaN: an empty mask that looks like a result.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_STATIC_BYTES = 256 * 2**20
"""Largest tensor of fixed shape a graph may make (the largest weight of the SegNet family is 9 MB)."""

_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}


def graph_problem(path: Path) -> str | None:
    """Why the ONNX file at ``path`` may not be opened, or None. Needs the ``onnx`` package."""
    import onnx
    from onnx import numpy_helper

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # noqa: BLE001 - protobuf raises several unrelated types
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        return f"not a loadable ONNX model ({reason})"
    for tensor in proto.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            return f"weight {tensor.name!r} is stored outside the file (external data is not read)"
        values = numpy_helper.to_array(tensor)
        if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
            return f"has NaN or infinite weights ({tensor.name})"
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception as error:  # noqa: BLE001 - inference fails on graphs ONNX Runtime would refuse too
        return f"shapes cannot be inferred ({str(error).splitlines()[0][:200] if str(error) else error})"
    graph = inferred.graph
    for value in [*graph.value_info, *graph.output]:
        size = static_bytes(value.type.tensor_type)
        if size is not None and size > MAX_STATIC_BYTES:
            return (
                f"makes a tensor of fixed size {size / 2**20:,.0f} MB ({value.name!r}); at most "
                f"{MAX_STATIC_BYTES / 2**20:.0f} MB"
            )
    return None


def static_bytes(tensor_type) -> int | None:
    """The size in bytes of a tensor type whose every dimension is a fixed number, else None."""
    if not tensor_type.HasField("shape"):
        return None
    dims = tensor_type.shape.dim
    if not all(dim.HasField("dim_value") for dim in dims):
        return None
    count = 1
    for dim in dims:
        count *= max(dim.dim_value, 0)
    return count * _BYTES.get(tensor_type.elem_type, 8)
