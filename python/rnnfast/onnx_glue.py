"""numpy evaluation of the few ONNX operators exporters put around recurrent nodes (for rnnfast.onnx.load).

torch.onnx.export and rnnfast.onnx.export surround their RNN/LSTM/GRU nodes with shape glue: zero
initial states built from ``Shape(x)``, ``Slice`` of a stacked state input, ``Transpose``/``Reshape``/
``Squeeze`` between layers, ``Concat`` of the layers' final states. These are evaluated here on numpy
arrays; any other operator is refused by the loader (``SUPPORTED``).
"""
from __future__ import annotations

import numpy as np


def _axes(node_attrs, inputs, index):
    """Axes from input ``index`` (opset 13+) or from the ``axes`` attribute (older opsets)."""
    if len(inputs) > index and inputs[index] is not None:
        return [int(a) for a in np.asarray(inputs[index]).reshape(-1)]
    axes = node_attrs.get("axes")
    return None if axes is None else [int(a) for a in axes]


def _positive(axes, rank):
    return [a + rank if a < 0 else a for a in axes]


def _shape(attrs, inputs):
    shape = np.array(inputs[0].shape, np.int64)
    start, end = attrs.get("start", 0), attrs.get("end")
    return shape[start:end]


def _gather(attrs, inputs):
    data, indices = inputs
    return np.take(data, np.asarray(indices, np.int64), axis=attrs.get("axis", 0))


def _unsqueeze(attrs, inputs):
    x = np.asarray(inputs[0])
    axes = sorted(_positive(_axes(attrs, inputs, 1), x.ndim + len(_axes(attrs, inputs, 1))))
    for a in axes:
        x = np.expand_dims(x, a)
    return x


def _squeeze(attrs, inputs):
    x = np.asarray(inputs[0])
    axes = _axes(attrs, inputs, 1)
    if axes is None:
        return np.squeeze(x)
    axes = _positive(axes, x.ndim)
    if any(x.shape[a] != 1 for a in axes):
        raise ValueError(f"Squeeze: axes {axes} of a tensor of shape {x.shape} are not all 1")
    return np.squeeze(x, axis=tuple(axes))


def _concat(attrs, inputs):
    return np.concatenate([np.asarray(v) for v in inputs], axis=attrs["axis"])


def _constant_of_shape(attrs, inputs):
    value = attrs.get("value")
    value = np.zeros(1, np.float32) if value is None else value
    return np.full([int(d) for d in np.asarray(inputs[0]).reshape(-1)], value.reshape(-1)[0], dtype=value.dtype)


def _transpose(attrs, inputs):
    x = np.asarray(inputs[0])
    return np.transpose(x, attrs.get("perm"))


def _reshape(attrs, inputs):
    x, shape = np.asarray(inputs[0]), [int(d) for d in np.asarray(inputs[1]).reshape(-1)]
    if not attrs.get("allowzero", 0):
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return np.reshape(x, shape)


def _slice(attrs, inputs):
    x = np.asarray(inputs[0])
    if len(inputs) > 1:  # opset 10+: starts, ends[, axes[, steps]] are inputs
        starts, ends = (np.asarray(v, np.int64).reshape(-1) for v in inputs[1:3])
        axes = _axes({}, inputs, 3)
        steps = inputs[4] if len(inputs) > 4 and inputs[4] is not None else None
    else:
        starts, ends, axes, steps = attrs["starts"], attrs["ends"], attrs.get("axes"), None
    axes = list(range(len(starts))) if axes is None else _positive(axes, x.ndim)
    steps = [1] * len(starts) if steps is None else [int(s) for s in np.asarray(steps).reshape(-1)]
    index = [slice(None)] * x.ndim
    for a, s, e, st in zip(axes, starts, ends, steps):
        n = x.shape[a]  # ONNX clamps starts/ends the way Python slices do, with INT64 bounds meaning "to the end"
        index[a] = slice(int(max(min(s, n), -n - 1)), int(max(min(e, n), -n - 1)), st)
    return x[tuple(index)]


def _cast(attrs, inputs):
    from onnx import helper
    return np.asarray(inputs[0]).astype(helper.tensor_dtype_to_np_dtype(attrs["to"]))


def _expand(attrs, inputs):
    x, shape = np.asarray(inputs[0]), tuple(int(d) for d in np.asarray(inputs[1]).reshape(-1))
    return np.array(np.broadcast_to(x, np.broadcast_shapes(x.shape, shape)))


SUPPORTED = {
    "Identity": lambda attrs, inputs: inputs[0],
    "Shape": _shape,
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": _concat,
    "ConstantOfShape": _constant_of_shape,
    "Transpose": _transpose,
    "Reshape": _reshape,
    "Slice": _slice,
    "Cast": _cast,
    "Expand": _expand,
}


def attributes(node) -> dict:
    """A node's attributes as Python values (tensors as numpy arrays, strings decoded)."""
    from onnx import helper, numpy_helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if hasattr(v, "dims"):  # TensorProto
            v = numpy_helper.to_array(v)
        elif isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, list):
            v = [x.decode() if isinstance(x, bytes) else x for x in v]
        out[a.name] = v
    return out


def evaluate(node, attrs: dict, inputs: list):
    """The outputs of one glue node (a list, one per output) for its input values (None: omitted)."""
    return [SUPPORTED[node.op_type](attrs, inputs)]
