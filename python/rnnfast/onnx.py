"""ONNX export: ``rnnfast.onnx.export(module, path)`` writes the model as an ONNX graph (opset 17).

Every recurrent layer becomes one ONNX ``RNN``/``LSTM``/``GRU`` node (``direction="bidirectional"``
for bidirectional layers), with the weights reordered to ONNX's gate order (LSTM i,o,f,c; GRU
z,r,h with ``linear_before_reset=1``, which is PyTorch's and our GRU) and ``sequence_lens`` fed by
the graph's ``lengths`` input, so ragged batches mean what they mean in rnnfast. A residual stack
(``residual=True``) adds an ``Add`` of each layer's input to the output of every layer after the first.

Graph inputs and outputs (B and T symbolic; ``batch_first`` modules and the models take (B, T, ...)):

- ``nn.RNN/LSTM/GRU``: ``x`` (T, B, I), ``lengths`` (B,) int32, ``h0`` (L*D, B, H) [, ``c0``]
  -> ``y`` (T, B, D*H), ``h_n`` [, ``c_n``]
- ``models.LanguageModel``: ``ids`` (B, T) int64, ``lengths``, ``h0`` [, ``c0``] -> ``logits``
  (B, T, V), ``h_n`` [, ``c_n``] (embedding: Gather; output layer: MatMul + Add)
- ``models.SequenceClassifier``: ``x`` (ids (B, T) int64 or features (B, T, F)), ``lengths`` ->
  ``logits`` (B, num_outputs) (pooling 'last', 'mean' or 'max' over the valid steps; head: Gemm)

``rnnfast.onnx.load(path_or_model)`` goes the other way (``rnnfast.onnx_import``): an ONNX graph of
RNN/LSTM/GRU nodes as an ``nn`` module inside a callable used like an ONNX Runtime session.

Needs the ``onnx`` package (imported only when these functions run): ``pip install onnx``.
"""
from __future__ import annotations

import os

import numpy as np

from ._atomic import atomic_write
from .deploy import check_float32_weights, check_no_projection

__all__ = ["export", "load", "OPSET"]

OPSET = 17
IR_VERSION = 8  # readable by any onnxruntime that runs opset 17
_OPS = {"rnn_tanh": "RNN", "rnn_relu": "RNN", "lstm": "LSTM", "gru": "GRU"}
# ONNX gate block k is PyTorch block _ORDER[cell][k]
_ORDER = {"rnn_tanh": (0,), "rnn_relu": (0,), "lstm": (0, 3, 1, 2), "gru": (1, 0, 2)}


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("rnnfast.onnx.export needs the onnx package: pip install onnx") from None
    return onnx


def onnx_gate_order(w: np.ndarray, cell: str, hidden_size: int) -> np.ndarray:
    """PyTorch-ordered gate blocks (rows) of a weight or bias, in ONNX's order."""
    blocks = [w[k * hidden_size:(k + 1) * hidden_size] for k in _ORDER[cell]]
    return np.ascontiguousarray(np.concatenate(blocks, axis=0), dtype=np.float32)


class _Graph:
    """Nodes and initializers of the graph under construction, with unique names."""

    def __init__(self, onnx):
        self.h = onnx.helper
        self.nph = onnx.numpy_helper
        self.nodes, self.inits, self._n = [], [], 0

    def name(self, base):
        self._n += 1
        return f"{base}_{self._n}"

    def const(self, array, base="c"):
        n = self.name(base)
        self.inits.append(self.nph.from_array(np.asarray(array), n))
        return n

    def op(self, kind, inputs, n_out=1, **attrs):
        outs = [self.name(kind.lower()) for _ in range(n_out)]
        self.nodes.append(self.h.make_node(kind, inputs, outs, **attrs))
        return outs[0] if n_out == 1 else outs


def _recurrent_stack(g: _Graph, rnn, x, lengths, h0, c0):
    """Time-major (T, B, F) x through every layer; returns (y (T, B, D*H), h_n, c_n or None)."""
    D, H, cell = rnn.num_directions, rnn.hidden_size, rnn.cell
    lstm = cell == "lstm"
    hs, cs = [], []
    for k in range(rnn.num_layers):
        W, R, Bias = [], [], []
        for d in range(D):
            w_ih, w_hh, b_ih, b_hh = rnn._layer_params[k][d]
            W.append(onnx_gate_order(w_ih.data, cell, H))
            R.append(onnx_gate_order(w_hh.data, cell, H))
            zeros = np.zeros(w_ih.data.shape[0], np.float32)
            Bias.append(np.concatenate([onnx_gate_order(zeros if b is None else b.data, cell, H) for b in (b_ih, b_hh)]))
        rows = [g.const(np.array([k * D], np.int64)), g.const(np.array([(k + 1) * D], np.int64)),
                g.const(np.array([0], np.int64))]
        inputs = [x, g.const(np.stack(W), "W"), g.const(np.stack(R), "R"), g.const(np.stack(Bias), "B"), lengths,
                  g.op("Slice", [h0] + rows)]
        if lstm:
            inputs.append(g.op("Slice", [c0] + rows))
        if rnn.peepholes:  # ONNX's P orders them p_i, p_o, p_f
            inputs.append(g.const(np.stack([rnn._peep_params[k][d].data[[0, 2, 1]].reshape(-1) for d in range(D)]),
                                  "P"))
        attrs = dict(hidden_size=H, direction=rnn.direction)
        if cell == "gru":
            attrs["linear_before_reset"] = int(rnn.linear_before_reset)
        if _OPS[cell] == "RNN":
            attrs["activations"] = ["Relu" if cell == "rnn_relu" else "Tanh"] * D
        outs = g.op(_OPS[cell], inputs, 3 if lstm else 2, **attrs)
        y4 = outs[0]  # (T, D, B, H)
        hs.append(outs[1])
        if lstm:
            cs.append(outs[2])
        layer_in = x
        x = g.op("Reshape", [g.op("Transpose", [y4], perm=[0, 2, 1, 3]), g.const(np.array([0, 0, -1], np.int64))])
        if rnn.residual and k > 0:  # the residual stack's skip
            x = g.op("Add", [x, layer_in])
    cat = (lambda parts: parts[0] if len(parts) == 1 else g.op("Concat", parts, axis=0))
    return x, cat(hs), (cat(cs) if lstm else None)


def _pool(g: _Graph, pooling, y, h_n, lengths, rnn):
    """(B, D*H) from the top layer, over each sequence's valid steps."""
    D, L = rnn.num_directions, rnn.num_layers
    if pooling == "last":
        top = g.op("Slice", [h_n, g.const(np.array([(L - 1) * D], np.int64)), g.const(np.array([L * D], np.int64)),
                             g.const(np.array([0], np.int64))])
        return g.op("Reshape", [g.op("Transpose", [top], perm=[1, 0, 2]), g.const(np.array([0, -1], np.int64))])
    if pooling == "mean":  # steps past a length are zero in y
        total = g.op("ReduceSum", [y, g.const(np.array([0], np.int64))], keepdims=0)
        count = g.op("Unsqueeze", [g.op("Cast", [lengths], to=1), g.const(np.array([1], np.int64))])
        return g.op("Div", [total, count])
    T = g.op("Gather", [g.op("Shape", [y]), g.const(np.array(0, np.int64))])
    steps = g.op("Range", [g.const(np.array(0, np.int64)), T, g.const(np.array(1, np.int64))])
    lens64 = g.op("Cast", [lengths], to=7)
    valid = g.op("Less", [g.op("Unsqueeze", [steps, g.const(np.array([1], np.int64))]),
                          g.op("Unsqueeze", [lens64, g.const(np.array([0], np.int64))])])  # (T, B)
    valid = g.op("Unsqueeze", [valid, g.const(np.array([2], np.int64))])
    masked = g.op("Where", [valid, y, g.const(np.array(-np.inf, np.float32))])
    return g.op("ReduceMax", [masked], axes=[0], keepdims=0)


def _linear(g: _Graph, linear, x, two_d: bool):
    w = np.ascontiguousarray(linear.weight.data, dtype=np.float32)
    b = linear.bias.data if linear.bias is not None else np.zeros(linear.out_features, np.float32)
    if two_d:
        return g.op("Gemm", [x, g.const(w, "head_w"), g.const(b.astype(np.float32), "head_b")], transB=1)
    return g.op("Add", [g.op("MatMul", [x, g.const(np.ascontiguousarray(w.T), "head_wt")]),
                        g.const(b.astype(np.float32), "head_b")])


def _build(module):
    onnx = _onnx()
    from .models import LanguageModel, SequenceClassifier
    from .nn.recurrent import RNNBase

    g, h, f = _Graph(onnx), onnx.helper, onnx.TensorProto.FLOAT
    i64, i32 = onnx.TensorProto.INT64, onnx.TensorProto.INT32
    if isinstance(module, RNNBase):
        rnn, kind = module, "rnn"
    elif isinstance(module, LanguageModel):
        rnn, kind = module.rnn, "language_model"
    elif isinstance(module, SequenceClassifier):
        rnn, kind = module.rnn, "sequence_classifier"
    else:
        raise TypeError("rnnfast.onnx.export: module: expected an nn.RNN, nn.LSTM, nn.GRU, models.LanguageModel "
                        f"or models.SequenceClassifier, got {type(module).__name__}")
    check_float32_weights(rnn, "rnnfast.onnx.export")
    check_no_projection(rnn, "rnnfast.onnx.export", "ONNX's LSTM operator has neither a projection nor layer "
                        "norm (they would need an unrolled or Loop graph)")
    LD, H, lstm = rnn.num_layers * rnn.num_directions, rnn.hidden_size, rnn.cell == "lstm"
    inputs, outputs = [], []
    state_in = [h.make_tensor_value_info("h0", f, [LD, "B", H])] + \
        ([h.make_tensor_value_info("c0", f, [LD, "B", H])] if lstm else [])
    lengths_in = h.make_tensor_value_info("lengths", i32, ["B"])
    if kind == "rnn":
        batch_first = module.batch_first
        inputs = [h.make_tensor_value_info("x", f, ["B", "T", rnn.input_size] if batch_first
                                           else ["T", "B", rnn.input_size]), lengths_in] + state_in
        x = g.op("Transpose", ["x"], perm=[1, 0, 2]) if batch_first else "x"
    else:
        emb = module.embedding if kind == "language_model" else module.encoder_input.embedding
        if emb is not None:
            inputs = [h.make_tensor_value_info("ids" if kind == "language_model" else "x", i64, ["B", "T"])]
            table = g.const(np.ascontiguousarray(emb.weight.data, dtype=np.float32), "embedding")
            x = g.op("Transpose", [g.op("Gather", [table, inputs[0].name], axis=0)], perm=[1, 0, 2])
        else:
            inputs = [h.make_tensor_value_info("x", f, ["B", "T", rnn.input_size])]
            x = g.op("Transpose", ["x"], perm=[1, 0, 2])
        inputs.append(lengths_in)
        if kind == "language_model":
            inputs += state_in
    if kind == "sequence_classifier":  # no state inputs: zeros
        zeros = g.op("ConstantOfShape", [g.op("Concat", [g.const(np.array([LD], np.int64)),
                                                         g.op("Shape", ["lengths"]),
                                                         g.const(np.array([H], np.int64))], axis=0)])
        h0, c0 = zeros, zeros
    else:
        h0, c0 = "h0", ("c0" if lstm else None)
    y, h_n, c_n = _recurrent_stack(g, rnn, x, "lengths", h0, c0)

    def emit(name, value, shape, elem=f):
        g.nodes.append(h.make_node("Identity", [value], [name]))
        outputs.append(h.make_tensor_value_info(name, elem, shape))

    D = rnn.num_directions
    if kind == "rnn":
        emit("y", g.op("Transpose", [y], perm=[1, 0, 2]) if module.batch_first else y,
             ["B", "T", D * H] if module.batch_first else ["T", "B", D * H])
    elif kind == "language_model":
        logits = _linear(g, module.decoder, g.op("Transpose", [y], perm=[1, 0, 2]), two_d=False)
        emit("logits", logits, ["B", "T", module.vocab_size])
    else:
        pooled = _pool(g, module.pooling, y, h_n, "lengths", rnn)
        emit("logits", _linear(g, module.head, pooled, two_d=True), ["B", module.num_outputs])
    if kind != "sequence_classifier":
        emit("h_n", h_n, [LD, "B", H])
        if lstm:
            emit("c_n", c_n, [LD, "B", H])
    graph = h.make_graph(g.nodes, f"rnnfast_{kind}", inputs, outputs, g.inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", OPSET)], producer_name="rnnfast")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def export(module, path) -> None:
    """Write ``module`` (eval-mode semantics: no dropout) as an ONNX model to ``path`` (atomically).

    ``module`` is an ``nn.RNN``/``nn.LSTM``/``nn.GRU`` (any layers, uni- or bidirectional, relu or
    tanh) or a ``models.LanguageModel`` / ``models.SequenceClassifier``; see the module docstring
    for the graph's inputs and outputs.
    """
    atomic_write(os.fspath(path), _build(module).SerializeToString())


def load(path_or_model):
    """Load an ONNX graph of RNN/LSTM/GRU nodes as a callable used like an ONNX Runtime session.

    Parameters
    ----------
    path_or_model : str, os.PathLike or onnx.ModelProto
        The model: one recurrent node or a stack of them, with the shape glue exporters write
        (see ``rnnfast.onnx_import``). What rnnfast cannot run raises ``ValueError`` naming the node
        and the attribute.

    Returns
    -------
    rnnfast.onnx_import.Session
        ``session(**inputs)`` returns the graph's outputs as a list; ``session.module`` is the
        ``nn.RNN``/``nn.LSTM``/``nn.GRU`` it built.
    """
    from .onnx_import import load as _load
    return _load(path_or_model)
