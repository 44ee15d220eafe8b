"""What an ``.onnx`` file may hold before ONNX Runtime opens it: weights that are numbers, stored in the
file, and no tensor out of proportion to the photo it is given.

An ONNX file is a program: a ``ConstantOfShape`` node with the constant shape [40000, 40000] made ONNX
Runtime allocate 6.4 GB for a file of a few hundred bytes, whatever photo came in. Every tensor's shape is
inferred from the graph alone (``onnx.shape_inference`` with data propagation, so shapes computed from
constants or from the input's own shape count), with a dynamic batch, height and width taken as 1 x
:data:`PROBE_SIDE` x :data:`PROBE_SIDE`. No tensor may pass :data:`BYTES_PER_INPUT_PIXEL` bytes per input
pixel (at least :data:`MIN_TENSOR_BYTES`): the widest layer of the SegNet family holds 128 float channels
a pixel (512 bytes), a file that multiplies the photo's size by a thousand does not pass.
NaN or infinite weights would make every answer NaN: an empty mask that looks like a result.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

BYTES_PER_INPUT_PIXEL = 1024
MIN_TENSOR_BYTES = 256 * 2**20
PROBE_SIDE = 512
_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}


def graph_problem(path: Path) -> str | None:
    """Why the ONNX file at ``path`` may not be opened, or None. Needs the ``onnx`` package."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # noqa: BLE001 - protobuf raises several unrelated types
        return f"not a loadable ONNX model ({_first_line(error)})"
    problem = _weights_problem(proto)
    if problem:
        return problem
    pixels = _probe_input_dims(proto)
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception as error:  # noqa: BLE001 - inference fails on graphs ONNX Runtime would refuse too
        return f"shapes cannot be inferred ({_first_line(error)[:200]})"
    limit = max(MIN_TENSOR_BYTES, BYTES_PER_INPUT_PIXEL * pixels)
    graph = inferred.graph
    for value in [*graph.value_info, *graph.output]:
        size = static_bytes(value.type.tensor_type)
        if size is not None and size > limit:
            return (
                f"makes a tensor of {size / 2**20:,.0f} MB ({value.name!r}) from an input of "
                f"{pixels:,} pixels; at most {limit / 2**20:,.0f} MB"
            )
    return None


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _weights_problem(proto) -> str | None:
    import onnx
    from onnx import numpy_helper

    for tensor in proto.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            return f"weight {tensor.name!r} is stored outside the file (external data is not read)"
        values = numpy_helper.to_array(tensor)
        if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
            return f"has NaN or infinite weights ({tensor.name})"
    return None


def _probe_input_dims(proto) -> int:
    """Give the graph's inputs concrete dimensions where they are dynamic (batch 1, height and width
    :data:`PROBE_SIDE`), so shapes that follow the input are inferred too; the pixels (batch x height x
    width) of its first 4-D input, the photo."""
    pixels = 0
    initializers = {tensor.name for tensor in proto.graph.initializer}
    for value in proto.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        for position, dim in enumerate(dims):
            if not dim.HasField("dim_value") or dim.dim_value <= 0:
                dim.dim_value = 1 if position == 0 else PROBE_SIDE
        if len(dims) == 4 and not pixels:
            pixels = dims[0].dim_value * dims[2].dim_value * dims[3].dim_value
    return pixels or PROBE_SIDE * PROBE_SIDE


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
