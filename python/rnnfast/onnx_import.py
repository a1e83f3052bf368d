"""ONNX import: ``rnnfast.onnx.load(path_or_model)`` runs an ONNX graph of RNN/LSTM/GRU nodes on rnnfast.

The graph may hold one recurrent node or a stack of them (node k's ``Y`` feeding node k+1's ``X``,
directly or through the Transpose/Reshape/Squeeze glue that torch.onnx.export and
rnnfast.onnx.export put between layers), plus the shape glue of ``onnx_glue.SUPPORTED`` around it
(zero initial states from ``Shape(x)``, ``Slice`` of a stacked state, ``Concat`` of final states).
The stack becomes one ``nn.RNN``/``nn.LSTM``/``nn.GRU`` (``Session.module``) with the weights of the
graph's initializers or Constant nodes; everything else is evaluated in numpy around it. What rnnfast
cannot express (custom activations, clip, input_forget, layers of different sizes, ...) is refused
with an error naming the node and the attribute.

Needs the ``onnx`` package (imported only when ``load`` runs): ``pip install onnx``.
"""
from __future__ import annotations

import os

import numpy as np

from . import onnx_glue
from .onnx import _ORDER

__all__ = ["load", "Session"]

_GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}
_DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}
_ATTRIBUTES = {"activations", "activation_alpha", "activation_beta", "clip", "direction", "hidden_size", "layout"}
_OP_ATTRIBUTES = {"RNN": set(), "LSTM": {"input_forget"}, "GRU": {"linear_before_reset"}}
_INPUTS = {"RNN": ("X", "W", "R", "B", "sequence_lens", "initial_h"),
           "GRU": ("X", "W", "R", "B", "sequence_lens", "initial_h"),
           "LSTM": ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P")}
_FLOAT, _INTS = 1, (2, 3, 4, 5, 6, 7, 12, 13)  # TensorProto element types: FLOAT; (u)int8..64


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("rnnfast.onnx.load needs the onnx package: pip install onnx") from None
    return onnx


def _describe(node) -> str:
    return f"node '{node.name or next((o for o in node.output if o), '')}' ({node.op_type})"


class _Missing:
    """The value of a graph input the call left out (and of everything computed from it)."""

    def __init__(self, name: str):
        self.name = name


def _torch_gate_order(w: np.ndarray, cell: str, hidden_size: int) -> np.ndarray:
    """ONNX-ordered gate blocks (rows) of a weight or bias, in PyTorch's (rnnfast's) order."""
    onnx_block = np.argsort(_ORDER[cell])  # PyTorch block j is ONNX block onnx_block[j]
    return np.concatenate([w[k * hidden_size:(k + 1) * hidden_size] for k in onnx_block], axis=0)


class _Layer:
    """One recurrent node: its attributes checked against what rnnfast runs, its weights read."""

    def __init__(self, node, consts: dict):
        self.node, self.op = node, node.op_type
        where = f"rnnfast.onnx.load: {_describe(node)}"
        attrs = onnx_glue.attributes(node)
        for name in attrs:
            if name not in _ATTRIBUTES | _OP_ATTRIBUTES[self.op]:
                raise ValueError(f"{where}: attribute {name!r} is not supported")
        names = list(node.input) + [""] * (len(_INPUTS[self.op]) - len(node.input))
        self.inputs = dict(zip(_INPUTS[self.op], names))
        if len(node.input) > len(_INPUTS[self.op]):
            raise ValueError(f"{where}: expected at most {len(_INPUTS[self.op])} inputs, got {len(node.input)}")
        for name in ("W", "R", "B", "P"):
            value = self.inputs.get(name, "")
            if value and value not in consts:
                raise ValueError(f"{where}: input {name} ({value!r}) must be an initializer or a Constant "
                                 "(rnnfast loads the weights once), but it is computed at run time")
        W, R = (np.asarray(consts[self.inputs[n]], np.float32) for n in ("W", "R"))
        if W.ndim != 3 or R.ndim != 3:
            raise ValueError(f"{where}: expected W and R of rank 3, got shapes {W.shape} and {R.shape}")
        direction = attrs.get("direction", "forward")
        if direction not in ("forward", "reverse", "bidirectional"):
            raise ValueError(f"{where}: attribute direction: expected 'forward', 'reverse' or 'bidirectional', "
                             f"got {direction!r}")
        self.D = 2 if direction == "bidirectional" else 1
        self.H = int(attrs.get("hidden_size", R.shape[-1]))
        G = _GATES[self.op]
        self.I = W.shape[2]
        if W.shape[:2] != (self.D, G * self.H) or R.shape != (self.D, G * self.H, self.H):
            raise ValueError(f"{where}: with hidden_size={self.H} and direction={direction!r} expected W "
                             f"({self.D}, {G * self.H}, I) and R ({self.D}, {G * self.H}, {self.H}), "
                             f"got {W.shape} and {R.shape}")
        self.layout = int(attrs.get("layout", 0))
        if self.layout not in (0, 1):
            raise ValueError(f"{where}: attribute layout: expected 0 or 1, got {self.layout}")
        for name in ("activation_alpha", "activation_beta", "clip"):
            if name in attrs:
                raise ValueError(f"{where}: attribute {name}={attrs[name]!r} is not supported (rnnfast's cells "
                                 "have no clipping and no parametric activations)")
        self.cell = self._cell(attrs, where)
        if attrs.get("input_forget", 0):
            raise ValueError(f"{where}: attribute input_forget={attrs['input_forget']} (coupled input and forget "
                             "gates) is not supported")
        self.direction = direction
        self.linear_before_reset = self.op != "GRU" or attrs.get("linear_before_reset", 0) == 1
        B = consts.get(self.inputs["B"]) if self.inputs["B"] else None
        if B is not None:
            B = np.asarray(B, np.float32)
            if B.shape != (self.D, 2 * G * self.H):
                raise ValueError(f"{where}: expected B of shape ({self.D}, {2 * G * self.H}), got {B.shape}")
        P = consts.get(self.inputs.get("P", "")) if self.inputs.get("P") else None
        if P is not None:
            P = np.asarray(P, np.float32)
            if P.shape != (self.D, 3 * self.H):
                raise ValueError(f"{where}: expected P of shape ({self.D}, {3 * self.H}), got {P.shape}")
            if not np.any(P != 0):  # all-zero peepholes are the plain LSTM
                P = None
        self.W, self.R, self.B, self.P = W, R, B, P
        outs = list(node.output) + [""] * 3
        self.Y, self.Y_h, self.Y_c = outs[0], outs[1], (outs[2] if self.op == "LSTM" else "")

    def _cell(self, attrs, where) -> str:
        acts = list(attrs.get("activations", []))
        if self.op == "RNN":
            acts = acts or ["Tanh"] * self.D
            if len(acts) != self.D or len(set(acts)) != 1 or acts[0] not in ("Tanh", "Relu"):
                raise ValueError(f"{where}: attribute activations={attrs.get('activations')!r} is not supported: "
                                 "rnnfast's RNN runs Tanh or Relu, the same in both directions")
            return "rnn_" + acts[0].lower()
        default = _DEFAULT_ACTIVATIONS[self.op]
        if acts and acts != default * self.D:
            raise ValueError(f"{where}: attribute activations={attrs['activations']!r} is not supported: rnnfast's "
                             f"{self.op} runs only the defaults {default}")
        return self.op.lower()

    def state_dict(self, k: int, bias: bool, peepholes: bool) -> dict:
        """This layer's parameters under rnnfast's (PyTorch's) names, gates reordered."""
        G, H, out = _GATES[self.op], self.H, {}
        for d in range(self.D):
            sfx = f"_l{k}" + ("_reverse" if d or self.direction == "reverse" else "")
            if peepholes:  # ONNX's P rows are p_i, p_o, p_f; rnnfast's weight_p rows p_i, p_f, p_o
                p = self.P[d].reshape(3, H) if self.P is not None else np.zeros((3, H), np.float32)
                out[f"weight_p{sfx}"] = p[[0, 2, 1]]
            out[f"weight_ih{sfx}"] = _torch_gate_order(self.W[d], self.cell, H)
            out[f"weight_hh{sfx}"] = _torch_gate_order(self.R[d], self.cell, H)
            if bias:
                b = self.B[d] if self.B is not None else np.zeros(2 * G * H, np.float32)
                out[f"bias_ih{sfx}"] = _torch_gate_order(b[:G * H], self.cell, H)
                out[f"bias_hh{sfx}"] = _torch_gate_order(b[G * H:], self.cell, H)
        return out


def _constant(node) -> np.ndarray:
    attrs = onnx_glue.attributes(node)
    for key, dtype in (("value", None), ("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in attrs:
            return np.asarray(attrs[key], dtype)
    raise ValueError(f"rnnfast.onnx.load: {_describe(node)}: attribute {sorted(attrs)} is not supported "
                     "(expected value, value_float(s) or value_int(s))")


def _fold(graph, onnx):
    """Initializers and values computable from them alone (Constant nodes and glue on them)."""
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    rest = []
    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            raise ValueError(f"rnnfast.onnx.load: {_describe(node)}: operator domain {node.domain!r} is not "
                             "supported (only the standard ONNX operators)")
        if node.op_type == "Constant":
            consts[node.output[0]] = _constant(node)
        elif node.op_type in _GATES:
            rest.append(node)
        elif node.op_type not in onnx_glue.SUPPORTED:
            raise ValueError(f"rnnfast.onnx.load: {_describe(node)}: operator {node.op_type} is not supported: "
                             "the graph may hold RNN, LSTM and GRU nodes and the shape glue between them ("
                             + ", ".join(sorted(onnx_glue.SUPPORTED)) + ", Constant)")
        elif all(not v or v in consts for v in node.input):
            attrs = onnx_glue.attributes(node)
            for name, value in zip(node.output, onnx_glue.evaluate(node, attrs, [consts.get(v) for v in node.input])):
                consts[name] = value
        else:
            rest.append(node)
    return consts, rest


def _to_time_major(y: np.ndarray, layout: int) -> np.ndarray:
    """An ONNX Y ((T, D, B, H) or layout=1 (B, T, D, H)) as the next layer's time-major (T, B, D*H)."""
    if layout == 0:
        T, D, B, H = y.shape
        return y.transpose(0, 2, 1, 3).reshape(T, B, D * H)
    B, T, D, H = y.shape
    return y.reshape(B, T, D * H).transpose(1, 0, 2)


class _Step:
    """One glue node, its protobuf fields read once (the per-call loop touches plain Python only)."""

    def __init__(self, node):
        self.run = onnx_glue.SUPPORTED[node.op_type]
        self.attrs = onnx_glue.attributes(node)
        self.inputs, self.outputs = tuple(node.input), tuple(node.output)
        self.where = _describe(node)


class _InputSpec:
    """A graph input's name, element type and declared shape, checked on each call."""

    def __init__(self, info):
        t = info.type.tensor_type
        self.name, self.elem = info.name, t.elem_type
        self.dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim] \
            if t.HasField("shape") else None
        self.want = None if self.dims is None else "(" + ", ".join(
            str(d) if d is not None else (p.dim_param or "?") for d, p in zip(self.dims, t.shape.dim)) + ")"

    def check(self, value) -> np.ndarray:
        arr = np.asarray(value)
        if self.elem == _FLOAT:
            if arr.dtype.kind != "f":
                raise TypeError(f"{self.name}: expected a float32 array, got dtype {arr.dtype}")
            arr = arr.astype(np.float32, copy=False)
        elif self.elem in _INTS and arr.dtype.kind not in "iu":
            raise TypeError(f"{self.name}: expected an integer array, got dtype {arr.dtype}")
        if self.dims is not None and (arr.ndim != len(self.dims) or
                                      any(d is not None and d != s for d, s in zip(self.dims, arr.shape))):
            raise ValueError(f"{self.name}: expected shape {self.want}, got {arr.shape}")
        return arr


class Session:
    """A loaded ONNX graph, called like an ONNX Runtime session.

    ``session(**inputs)`` takes the graph's inputs by name (numpy arrays) and returns its outputs as
    a list in the graph's order, in ONNX's layouts (Y (T, D, B, H), Y_h/Y_c (D, B, H), or the
    ``layout=1`` forms). An input that only feeds the recurrent nodes' optional inputs
    (``sequence_lens``, ``initial_h``, ``initial_c``) may be left out: it then means what ONNX means by
    an omitted input (full lengths, zero states). ``run(output_names, input_feed)`` is the same with
    ONNX Runtime's signature. ``module`` is the nn.RNN/LSTM/GRU that runs the recurrent stack.
    """

    def __init__(self, model):
        onnx = _onnx()
        graph = model.graph
        consts, nodes = _fold(graph, onnx)
        self._consts = consts
        self._inputs = [_InputSpec(v) for v in graph.input if v.name not in consts]
        self.input_names = [v.name for v in self._inputs]
        self.output_names = [v.name for v in graph.output]
        rec_nodes = [n for n in nodes if n.op_type in _GATES]
        if not rec_nodes:
            raise ValueError("rnnfast.onnx.load: the graph has no RNN, LSTM or GRU node")
        self._layers = [_Layer(n, consts) for n in rec_nodes]
        self._plan(nodes)
        self.module = self._build_module()

    def __repr__(self) -> str:
        return f"Session(inputs={self.input_names}, outputs={self.output_names}, module={self.module})"

    # load-time analysis -------------------------------------------------------------
    def _plan(self, nodes):
        """Split the non-constant nodes into those before the stack, the glue inside it and those after."""
        layers = self._layers
        producer = {o: n for n in nodes for o in n.output if o}
        rec_output = {}  # value -> index of the recurrent layer that produced it
        for k, layer in enumerate(layers):
            for o in layer.node.output:
                if o:
                    rec_output[o] = k
        deps = {}  # value -> recurrent layers it is computed from (stopping at their outputs)
        for n in nodes:  # ONNX keeps nodes in topological order
            for o in n.output:
                deps[o] = frozenset([rec_output[o]]) if o in rec_output else \
                    frozenset().union(*[deps.get(v, frozenset()) for v in n.input])

        def rec_deps(value):
            return deps.get(value, frozenset())  # constants and graph inputs: none

        for k, layer in enumerate(layers):
            where = f"rnnfast.onnx.load: {_describe(layer.node)}"
            for name in ("sequence_lens", "initial_h", "initial_c"):
                if rec_deps(layer.inputs.get(name, "")):
                    raise ValueError(f"{where}: input {name} is computed from another recurrent node's output "
                                     "(only a stack of layers, each reading the previous one's Y, is supported)")
            want = frozenset([k - 1]) if k else frozenset()
            if rec_deps(layer.inputs["X"]) != want:
                raise ValueError(f"{where}: input X must be " + ("computed from the graph's inputs" if k == 0 else
                                 f"the output Y of {_describe(layers[k - 1].node)}") + " (only a stack of layers, "
                                 "each reading the previous one's Y, is supported)")
        glue = {}  # id -> node
        for k in range(1, len(layers)):
            glue.update(self._check_glue(layers[k - 1], layers[k], producer, nodes))
        lens = {layer.inputs["sequence_lens"] for layer in layers}
        if len(lens) != 1:
            raise ValueError("rnnfast.onnx.load: the recurrent nodes read different sequence_lens "
                             f"({sorted(lens)}): rnnfast runs one set of lengths through the whole stack")
        self._lens = lens.pop()
        inner = {layer.Y for layer in layers[:-1]} | {o for n in glue.values() for o in n.output}
        for n in nodes:
            if n.op_type in _GATES or id(n) in glue:
                continue
            used = [v for v in n.input if v in inner]
            if used:
                raise ValueError(f"rnnfast.onnx.load: {_describe(n)} reads {used[0]!r}, an inner layer's output, "
                                 "which rnnfast keeps inside the stack")
        for name in self.output_names:
            if name in inner:
                raise ValueError(f"rnnfast.onnx.load: graph output {name!r} is an inner layer's output, which "
                                 "rnnfast keeps inside the stack")
        rest = [n for n in nodes if n.op_type not in _GATES and id(n) not in glue]
        self._before = [_Step(n) for n in rest if not any(rec_deps(o) for o in n.output)]
        self._after = [_Step(n) for n in rest if any(rec_deps(o) for o in n.output)]

    def _check_glue(self, lower: _Layer, upper: _Layer, producer, nodes) -> dict:
        """The nodes between two layers; checked (on a probe array) to pass Y on as the next layer's X."""
        where = f"rnnfast.onnx.load: between {_describe(lower.node)} and {_describe(upper.node)}"
        between, stack = {}, [upper.inputs["X"]]
        while stack:
            value = stack.pop()
            if value == lower.Y or value in self._consts:
                continue
            node = producer.get(value)
            if node is None or node.op_type in _GATES:
                raise ValueError(f"{where}: X reads {value!r}, not only the lower layer's output Y")
            if id(node) not in between:
                between[id(node)] = node
                stack.extend(v for v in node.input if v)
        T, B = 3, 2
        probe = np.arange(1, T * B * lower.D * lower.H + 1, dtype=np.float32)
        probe = probe.reshape((T, lower.D, B, lower.H) if lower.layout == 0 else (B, T, lower.D, lower.H))
        env = dict(self._consts)
        env[lower.Y] = probe
        try:
            for node in (n for n in nodes if id(n) in between):  # graph order
                outs = onnx_glue.evaluate(node, onnx_glue.attributes(node), [env.get(v) for v in node.input])
                env.update(zip(node.output, outs))
        except Exception as e:
            raise ValueError(f"{where}: the glue nodes do not evaluate on the lower layer's Y: {e}") from None
        expected = _to_time_major(probe, lower.layout)
        expected = expected if upper.layout == 0 else expected.transpose(1, 0, 2)
        got = np.asarray(env[upper.inputs["X"]])
        if got.shape != expected.shape or not np.array_equal(got, expected):
            raise ValueError(f"{where}: the nodes between them do not pass Y on as the next layer's input "
                             f"(expected Y's directions concatenated per step, shape {expected.shape}; got shape "
                             f"{got.shape}{'' if got.shape != expected.shape else ' in another order'})")
        return between

    def _build_module(self):
        from . import nn
        layers, first = self._layers, self._layers[0]
        for k, layer in enumerate(layers[1:], 1):
            where = f"rnnfast.onnx.load: {_describe(layer.node)}"
            for what, a, b in (("operator", layer.op, first.op), ("cell", layer.cell, first.cell),
                               ("hidden_size", layer.H, first.H), ("direction", layer.direction, first.direction),
                               ("linear_before_reset", layer.linear_before_reset, first.linear_before_reset)):
                if a != b:
                    raise ValueError(f"{where}: {what} {a!r} differs from the first layer's {b!r}: an rnnfast "
                                     "stack has one cell, hidden size and direction for every layer")
        bias = any(layer.B is not None and np.any(layer.B != 0) for layer in layers)  # zeros: bias=False
        peepholes = any(layer.P is not None for layer in layers)
        kw = dict(num_layers=len(layers), bias=bias, batch_first=first.layout == 1, bidirectional=first.D == 2)
        if first.direction == "reverse":
            kw.update(bidirectional=False, direction="reverse")
        if peepholes:
            kw["peepholes"] = True
        if not first.linear_before_reset:
            kw["linear_before_reset"] = False
        if first.op == "RNN":
            module = nn.RNN(first.I, first.H, nonlinearity=first.cell[4:], **kw)
        else:
            module = getattr(nn, first.op)(first.I, first.H, **kw)
        state = {}
        for k, layer in enumerate(layers):
            state.update(layer.state_dict(k, bias, peepholes))
        module.load_state_dict(state)
        return module.eval()

    # calls ------------------------------------------------------------------------------
    def run(self, output_names, input_feed: dict) -> list:
        """ONNX Runtime's signature: ``output_names`` None (all) or a list of names."""
        outputs = self(**input_feed)
        if output_names is None:
            return outputs
        unknown = [n for n in output_names if n not in self.output_names]
        if unknown:
            raise ValueError(f"output_names: {unknown[0]!r} is not an output of the graph {self.output_names}")
        return [outputs[self.output_names.index(n)] for n in output_names]

    def __call__(self, **inputs) -> list:
        unknown = [n for n in inputs if n not in self.input_names]
        if unknown:
            raise TypeError(f"{unknown[0]!r} is not an input of the graph: expected {self.input_names}")
        env = dict(self._consts)
        for spec in self._inputs:
            env[spec.name] = spec.check(inputs[spec.name]) if spec.name in inputs else _Missing(spec.name)
        self._evaluate(self._before, env)
        self._run_stack(env)
        self._evaluate(self._after, env)
        out = []
        for name in self.output_names:
            value = env.get(name)
            if isinstance(value, _Missing):
                raise TypeError(f"missing input {value.name!r}: output {name!r} needs it")
            out.append(np.ascontiguousarray(value))  # as ONNX Runtime returns them
        return out

    @staticmethod
    def _evaluate(steps, env):
        for step in steps:
            values = [env.get(v) if v else None for v in step.inputs]
            missing = next((v for v in values if isinstance(v, _Missing)), None)
            if missing is not None:
                outs = [missing] * len(step.outputs)
            else:
                try:
                    outs = [step.run(step.attrs, values)]
                except Exception as e:
                    raise ValueError(f"{step.where} failed on these inputs: {e}") from None
            env.update(zip(step.outputs, outs))

    def _run_stack(self, env):
        layers, first, last = self._layers, self._layers[0], self._layers[-1]
        D, H = first.D, first.H
        x = env[first.inputs["X"]]
        if isinstance(x, _Missing):
            raise TypeError(f"missing input {x.name!r} (the recurrent nodes' input X)")
        x = self._check_value(x, first.inputs["X"], 3)
        T, B = (x.shape[0], x.shape[1]) if first.layout == 0 else (x.shape[1], x.shape[0])
        if T == 0 or B == 0:
            raise ValueError(f"{self._source(first.inputs['X'])}: expected a non-empty sequence and batch, "
                             f"got shape {x.shape}")
        if x.shape[2] != first.I:
            raise ValueError(f"{self._source(first.inputs['X'])}: expected {first.I} features per step, "
                             f"got shape {x.shape}")
        lengths = self._lengths(env, T, B)
        h0 = self._states(env, "initial_h", B)
        c0 = self._states(env, "initial_c", B) if first.op == "LSTM" else None
        if first.op == "LSTM" and (h0 is None) != (c0 is None):
            zeros = np.zeros((len(layers) * D, B, H), np.float32)
            h0, c0 = (zeros if h0 is None else h0), (zeros if c0 is None else c0)
        hx = (h0, c0) if first.op == "LSTM" else h0
        y, state = self.module(x, None if h0 is None else hx, lengths=lengths)
        hn, cn = state if first.op == "LSTM" else (state, None)
        if last.layout == 0:  # (T, B, D*H) -> (T, D, B, H), a view: exporters' glue often transposes it back
            env[last.Y] = y.reshape(T, B, D, H).transpose(0, 2, 1, 3)
        else:  # batch_first: (B, T, D*H) -> (B, T, D, H)
            env[last.Y] = y.reshape(B, T, D, H)
        for k, layer in enumerate(layers):
            for name, full in ((layer.Y_h, hn), (layer.Y_c, cn)):
                if name:
                    part = full[k * D:(k + 1) * D]
                    env[name] = part if layer.layout == 0 else part.transpose(1, 0, 2)
        env.pop("", None)

    def _source(self, value: str) -> str:
        """How to name a value in an error: the graph input it is, or the value's name."""
        return value if value in self.input_names else f"value {value!r}"

    def _check_value(self, arr, name, ndim):
        arr = np.asarray(arr)
        if arr.ndim != ndim or arr.dtype.kind != "f":
            raise ValueError(f"{self._source(name)}: expected a {ndim}-D float array, got shape {arr.shape} "
                             f"dtype {arr.dtype}")
        return arr.astype(np.float32, copy=False)

    def _lengths(self, env, T, B):
        if not self._lens:
            return None
        lens = env.get(self._lens)
        if isinstance(lens, _Missing):
            return None
        lens = np.asarray(lens)
        where = self._source(self._lens)
        if lens.dtype.kind not in "iu" or lens.shape != (B,):
            raise ValueError(f"{where}: expected an integer array of shape ({B},), got shape {lens.shape} "
                             f"dtype {lens.dtype}")
        if lens.size and (lens.min() < 1 or lens.max() > T):
            raise ValueError(f"{where}: expected lengths in [1, {T}], got {lens.tolist()}")
        return lens.astype(np.int64)

    def _states(self, env, which, B):
        """The initial states of every layer stacked as (L*D, B, H), zeros where a layer has none."""
        layers = self._layers
        D, H = layers[0].D, layers[0].H
        parts, given = [], False
        for layer in layers:
            name = layer.inputs.get(which, "")
            value = env.get(name) if name else None
            if value is None or isinstance(value, _Missing):
                parts.append(np.zeros((D, B, H), np.float32))
                continue
            value = self._check_value(value, name, 3)
            want = (D, B, H) if layer.layout == 0 else (B, D, H)
            if value.shape != want:
                raise ValueError(f"{self._source(name)}: expected {which} of shape {want}, got {value.shape}")
            parts.append(value if layer.layout == 0 else value.transpose(1, 0, 2))
            given = True
        return np.ascontiguousarray(np.concatenate(parts)) if given else None


def load(path_or_model) -> Session:
    """Load an ONNX model (a path or an ``onnx.ModelProto``) of RNN/LSTM/GRU nodes as a :class:`Session`.

    >>> run = rnnfast.onnx.load("m.onnx")            # doctest: +SKIP
    >>> y, y_h = run(X=x, sequence_lens=lens)         # doctest: +SKIP
    """
    onnx = _onnx()
    if isinstance(path_or_model, onnx.ModelProto):
        model = path_or_model
    elif isinstance(path_or_model, (str, bytes, os.PathLike)):
        model = onnx.load(os.fspath(path_or_model))
    else:
        raise TypeError(f"path_or_model: expected a path or an onnx.ModelProto, got {type(path_or_model).__name__}")
    return Session(model)
