"""Small ONNX graphs of RNN/LSTM/GRU nodes for the import tests, ONNX's own backend node cases, and the
rnnfast recurrent modules both the export and the import tests round-trip."""
import importlib
import os

import numpy as np

from rnnfast import nn

EXPORTABLE = [
    lambda: nn.LSTM(5, 7, num_layers=2, seed=1),
    lambda: nn.LSTM(5, 6, num_layers=2, bidirectional=True, batch_first=True, seed=2),
    lambda: nn.GRU(5, 6, num_layers=3, bidirectional=True, seed=3),
    lambda: nn.GRU(5, 17, seed=4),
    lambda: nn.RNN(5, 4, nonlinearity="relu", num_layers=2, bidirectional=True, seed=5),
    lambda: nn.RNN(5, 4, bias=False, seed=6),
    # the cell variants ONNX has natively: P, linear_before_reset=0, direction="reverse"
    lambda: nn.LSTM(5, 7, num_layers=2, peepholes=True, seed=7),
    lambda: nn.LSTM(5, 6, bidirectional=True, peepholes=True, seed=8),
    lambda: nn.GRU(5, 17, num_layers=2, linear_before_reset=False, seed=9),
    lambda: nn.GRU(5, 6, bidirectional=True, linear_before_reset=False, seed=10),
    lambda: nn.LSTM(5, 6, num_layers=2, direction="reverse", seed=11),
    lambda: nn.GRU(5, 6, direction="reverse", linear_before_reset=False, batch_first=True, seed=12),
    lambda: nn.RNN(5, 4, direction="reverse", seed=13),
]

GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}
# ONNX's backend node cases of the three operators (onnx 1.14 .. 1.23)
BACKEND_CASES = [
    "test_lstm_defaults", "test_lstm_with_initial_bias", "test_lstm_with_peepholes", "test_lstm_batchwise",
    "test_lstm_reverse", "test_lstm_bidirectional",
    "test_gru_defaults", "test_gru_with_initial_bias", "test_gru_seq_length", "test_gru_batchwise",
    "test_gru_reverse", "test_gru_bidirectional",
    "test_simple_rnn_defaults", "test_simple_rnn_with_initial_bias", "test_rnn_seq_length",
    "test_simple_rnn_batchwise", "test_simple_rnn_reverse", "test_simple_rnn_bidirectional",
]


def _case_modules():
    """The cases as the onnx package generates them: (model, [(inputs, outputs)]) by name."""
    import onnx.backend.test.case.node as node_cases
    for name in ("lstm", "gru", "rnn"):  # their class definitions register the cases
        importlib.import_module(f"onnx.backend.test.case.node.{name}")
    return {c.name: (c.model, c.data_sets) for c in node_cases._NodeTestCases
            if c.model.graph.node[0].op_type in GATES}


def _case_files(root):
    """The same cases from the data files some onnx wheels ship (model.onnx, test_data_set_*/*.pb)."""
    import onnx
    from onnx import numpy_helper

    out = {}
    for name in sorted(os.listdir(root)):
        if not any(op in name for op in ("lstm", "gru", "rnn")):
            continue
        model = onnx.load(os.path.join(root, name, "model.onnx"))
        sets = []
        for d in sorted(x for x in os.listdir(os.path.join(root, name)) if x.startswith("test_data_set_")):
            def read(prefix, d=d):
                files = sorted(f for f in os.listdir(os.path.join(root, name, d)) if f.startswith(prefix))
                return [numpy_helper.to_array(onnx.load_tensor(os.path.join(root, name, d, f))) for f in files]
            sets.append((read("input_"), read("output_")))
        out[name] = (model, sets)
    return out


def backend_cases():
    """ONNX's reference cases for LSTM, GRU and RNN, by name."""
    import onnx
    root = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")
    return _case_files(root) if os.path.isdir(root) else _case_modules()


def with_weights_as_initializers(model, inputs):
    """The case's model with its W/R/B/P graph inputs turned into initializers (as exported models
    store them), and the remaining inputs as a feed dict."""
    import onnx
    from onnx import numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    feed, keep = {}, []
    weights = {v for v in m.graph.node[0].input[1:4]} | set(m.graph.node[0].input[7:8])
    for info, value in zip(model.graph.input, inputs):
        if info.name in weights:
            m.graph.initializer.append(numpy_helper.from_array(value, info.name))
        else:
            feed[info.name] = value
            keep.append(info)
    del m.graph.input[:]
    m.graph.input.extend(keep)
    return m, feed


def stack(op, layers, D, H, I, layout=0, lengths=False, states=False, bias=True, seed=0, attrs=None, glue=None,
          hidden=None):
    """A graph of ``layers`` stacked recurrent nodes, glue between them as exporters write it.

    Inputs: X, [lens], [h{k}, c{k} per layer]; outputs: the last Y, every layer's Y_h [and Y_c]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    G, f = GATES[op], TensorProto.FLOAT
    direction = "bidirectional" if D == 2 else "forward"
    nodes, inits = [], []
    inputs = [helper.make_tensor_value_info("X", f, ["T", "B", I] if layout == 0 else ["B", "T", I])]
    if lengths:
        inputs.append(helper.make_tensor_value_info("lens", TensorProto.INT32, ["B"]))
    state_shape = [D, "B", None] if layout == 0 else ["B", D, None]
    outputs = []
    x, layer_in = "X", I
    for k in range(layers):
        Hk = H if hidden is None else hidden[k]
        shape = [Hk if s is None else s for s in state_shape]
        W = rng.uniform(-0.6, 0.6, (D, G * Hk, layer_in)).astype(np.float32)
        R = rng.uniform(-0.6, 0.6, (D, G * Hk, Hk)).astype(np.float32)
        names = [x, f"W{k}", f"R{k}"]
        inits += [numpy_helper.from_array(W, f"W{k}"), numpy_helper.from_array(R, f"R{k}")]
        if bias:
            inits.append(numpy_helper.from_array(rng.uniform(-0.5, 0.5, (D, 2 * G * Hk)).astype(np.float32), f"B{k}"))
        names += [f"B{k}" if bias else "", "lens" if lengths else ""]
        if states:
            names.append(f"h{k}")
            inputs.append(helper.make_tensor_value_info(f"h{k}", f, shape))
            if op == "LSTM":
                names.append(f"c{k}")
                inputs.append(helper.make_tensor_value_info(f"c{k}", f, shape))
        outs = [f"Y{k}", f"Y_h{k}"] + ([f"Y_c{k}"] if op == "LSTM" else [])
        a = dict(hidden_size=Hk, direction=direction, layout=layout)
        if op == "GRU":
            a["linear_before_reset"] = 1
        a.update(attrs or {})
        nodes.append(helper.make_node(op, names, outs, name=f"{op.lower()}{k}", **a))
        outputs += [helper.make_tensor_value_info(o, f, shape) for o in outs[1:]]
        if k + 1 < layers:
            x = (glue or _glue)(nodes, inits, f"Y{k}", k, layout, D)
        layer_in = D * Hk
    Yshape = ["T", D, "B", H] if layout == 0 else ["B", "T", D, H]
    outputs.insert(0, helper.make_tensor_value_info(f"Y{layers - 1}", f, Yshape))
    graph = helper.make_graph(nodes, "stack", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _glue(nodes, inits, y, k, layout, D):
    """Y of one layer as the next one's X, the way torch.onnx.export writes it."""
    from onnx import helper, numpy_helper

    if layout == 1:  # (B, T, D, H) -> (B, T, D*H)
        inits.append(numpy_helper.from_array(np.array([0, 0, -1], np.int64), f"shape{k}"))
        nodes.append(helper.make_node("Reshape", [y, f"shape{k}"], [f"x{k + 1}"]))
    elif D == 1:
        inits.append(numpy_helper.from_array(np.array([1], np.int64), f"axes{k}"))
        nodes.append(helper.make_node("Squeeze", [y, f"axes{k}"], [f"x{k + 1}"]))
    else:
        nodes.append(helper.make_node("Transpose", [y], [f"t{k}"], perm=[0, 2, 1, 3]))
        nodes.append(helper.make_node("Constant", [], [f"shape{k}"],
                                      value=numpy_helper.from_array(np.array([0, 0, -1], np.int64))))
        nodes.append(helper.make_node("Reshape", [f"t{k}", f"shape{k}"], [f"x{k + 1}"]))
    return f"x{k + 1}"


def ort_session(model):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
