"""ONNX Runtime peer: the ONNX RNN/LSTM/GRU operators, built in memory from PyTorch-layout weights.

Layouts (ONNX operator spec): W (1, G*H, I), R (1, G*H, H), B (1, 2*G*H) = [input biases, recurrent
biases]. Gate blocks are ordered differently from PyTorch: LSTM i,o,f,c (PyTorch i,f,g,o); GRU z,r,h
(PyTorch r,z,n, and PyTorch's n gate is ONNX's linear_before_reset=1 form).
"""
from __future__ import annotations

import numpy as np

from ..onnx import IR_VERSION, OPSET, onnx_gate_order
from .configs import VARIANT_CELLS, Spec, Unsupported

OPS = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def _import():
    import onnx  # noqa: F401  (lazy: optional peer)
    import onnxruntime

    return onnxruntime


def version() -> str | None:
    try:
        return _import().__version__
    except ImportError:
        return None


def _reorder(w: np.ndarray, cell: str, hidden_size: int) -> np.ndarray:
    return onnx_gate_order(w, "rnn_tanh" if cell == "rnn" else cell, hidden_size)  # a bench cell name


def onnx_weights(cell: str, state_dict, hidden_size: int, sfx: str = "_l0") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(W, R, B) for the ONNX operator from PyTorch-named weights of layer 0 (forward direction, or
    the reverse one with sfx '_l0_reverse')."""
    if cell not in OPS:
        raise ValueError(f"cell: expected one of {sorted(OPS)}, got {cell!r}")
    sd = {k: np.asarray(v, dtype=np.float32) for k, v in state_dict.items()}
    W = _reorder(sd["weight_ih" + sfx], cell, hidden_size)[None]
    R = _reorder(sd["weight_hh" + sfx], cell, hidden_size)[None]
    gh = W.shape[1]
    b_ih = _reorder(sd["bias_ih" + sfx], cell, hidden_size) if "bias_ih" + sfx in sd else np.zeros(gh, np.float32)
    b_hh = _reorder(sd["bias_hh" + sfx], cell, hidden_size) if "bias_hh" + sfx in sd else np.zeros(gh, np.float32)
    return W, R, np.concatenate([b_ih, b_hh])[None]


def build_model(cell: str, state_dict, input_size: int, hidden_size: int, nonlinearity: str = "tanh"):
    """An onnx ModelProto: inputs X (T, B, I), initial_h [, initial_c] (1, B, H); outputs Y (T, 1, B, H),
    Y_h [, Y_c]. T and B are symbolic; the weights are initializers so that ORT can prepack them."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    variant, (cell, options) = cell, VARIANT_CELLS.get(cell, (cell, {}))  # ONNX has the variants natively
    direction = options.get("direction", "forward")
    W, R, B = onnx_weights(cell, state_dict, hidden_size, "_l0_reverse" if direction == "reverse" else "_l0")
    states = ["initial_h", "initial_c"] if cell == "lstm" else ["initial_h"]
    outputs = ["Y", "Y_h", "Y_c"] if cell == "lstm" else ["Y", "Y_h"]
    attrs = dict(hidden_size=hidden_size, direction=direction)
    if cell == "gru":
        attrs["linear_before_reset"] = int(options.get("linear_before_reset", True))
    if cell == "rnn":
        attrs["activations"] = [{"tanh": "Tanh", "relu": "Relu"}[nonlinearity]]
    inits = [numpy_helper.from_array(a, n) for a, n in ((W, "W"), (R, "R"), (B, "B"))]
    extra = []
    if options.get("peepholes"):  # input P: p_i, p_o, p_f (rnnfast's weight_p rows are i, f, o)
        p = np.asarray(state_dict["weight_p_l0"], np.float32)
        inits.append(numpy_helper.from_array(p[[0, 2, 1]].reshape(1, -1), "P"))
        extra = ["P"]
    # operator inputs: X, W, R, B, sequence_lens (unused: ""), initial_h [, initial_c] [, P]
    node = helper.make_node(OPS[cell], ["X", "W", "R", "B", ""] + states + extra, outputs, **attrs)
    f = TensorProto.FLOAT
    graph_inputs = [helper.make_tensor_value_info("X", f, ["T", "B", input_size])]
    graph_inputs += [helper.make_tensor_value_info(s, f, [1, "B", hidden_size]) for s in states]
    graph_outputs = [helper.make_tensor_value_info("Y", f, ["T", 1, "B", hidden_size])]
    graph_outputs += [helper.make_tensor_value_info(o, f, [1, "B", hidden_size]) for o in outputs[1:]]
    graph = helper.make_graph([node], f"rnnfast_bench_{variant}", graph_inputs, graph_outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def quantized(model):
    """The model with its LSTM as ORT's DynamicQuantizeLSTM (int8 weights, dynamic activations)."""
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as d:
        onnx.save(model, f"{d}/float.onnx")
        quantize_dynamic(f"{d}/float.onnx", f"{d}/int8.onnx", weight_type=QuantType.QInt8)
        return onnx.load(f"{d}/int8.onnx")


def make_session(model, threads: int, stop_spinning: bool = True):
    """``stop_spinning=False`` keeps ORT's default (its pool spins after run()), as most users have it."""
    ort = _import()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ORT's pool threads keep spinning after run() returns and then slow the engine timed next (2x on
    # torch at B=1 here); stopping them when run() returns leaves ORT's own timing unchanged.
    if stop_spinning:
        opts.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


class _Case:
    engine = "onnxruntime"

    def __init__(self, cell: str, spec: Spec, weights, data: dict, threads: int, stop_spinning: bool = True,
                 quantize: bool = False):
        if spec.layers > 1 or spec.bidirectional:
            raise Unsupported("the ONNX peer builds one unidirectional layer")
        self.cell = cell
        model = build_model(cell, weights, spec.input_size, spec.H)
        self.session = make_session(quantized(model) if quantize else model, threads, stop_spinning)
        self.cell = cell = VARIANT_CELLS.get(cell, (cell,))[0]
        names = ["initial_h", "initial_c"] if cell == "lstm" else ["initial_h"]
        self.zeros = {n: np.zeros((1, spec.B, spec.H), np.float32) for n in names}


class InferenceCase(_Case):
    def __init__(self, cell, spec, weights, data, threads, stop_spinning: bool = True, quantize: bool = False):
        super().__init__(cell, spec, weights, data, threads, stop_spinning, quantize)
        self.feed = dict(self.zeros, X=data["x"])

    def run(self):
        return self.session.run(None, self.feed)

    def outputs(self) -> dict:
        res = self.run()
        out = dict(y=res[0][:, 0], h_n=res[1])
        if self.cell == "lstm":
            out["c_n"] = res[2]
        return out


class StreamCase(_Case):
    """seq_len 1 per call, the final states fed back as the next initial states."""

    def __init__(self, cell, spec, weights, data, threads, quantize: bool = False):
        super().__init__(cell, spec, weights, data, threads, quantize=quantize)
        self.xs = [np.ascontiguousarray(data["x"][t:t + 1]) for t in range(spec.T)]
        self.state_out = ["Y_h", "Y_c"] if self.cell == "lstm" else ["Y_h"]

    def run(self, collect: list | None = None):
        feed = dict(self.zeros)
        for xt in self.xs:
            feed["X"] = xt
            states = self.session.run(self.state_out, feed)
            feed.update(zip(self.zeros, states))
            if collect is not None:
                collect.append(states[0][0].copy())

    def outputs(self) -> dict:
        ys: list = []
        self.run(ys)
        return dict(y=np.stack(ys))


def make_case(cell: str, spec: Spec, weights, data: dict, threads: int):
    """Raises ImportError when onnx/onnxruntime are missing, Unsupported for training."""
    _import()
    if spec.kind == "train":
        raise Unsupported("ONNX Runtime has no training for these operators")
    if spec.kind == "stream" and VARIANT_CELLS.get(cell, ("", {}))[1].get("direction") == "reverse":
        raise Unsupported("a reverse layer has no stream")
    cls = StreamCase if spec.kind == "stream" else InferenceCase
    return cls(cell, spec, weights, data, threads)
