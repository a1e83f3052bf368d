"""rnnfast.onnx.load: ONNX's own node cases, random graphs against ONNX Runtime, round trips (1e-5)."""
import zlib

import numpy as np
import pytest

import rnnfast.onnx
from rnnfast import nn

from helpers import ISAS, using_isa
from onnx_models import (BACKEND_CASES, EXPORTABLE, backend_cases, ort_session, stack,
                         with_weights_as_initializers)

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

TOL = dict(rtol=1e-5, atol=1e-5)
@pytest.fixture(scope="module")
def cases():
    return backend_cases()


def test_every_backend_case_is_run(cases):
    assert sorted(cases) == sorted(BACKEND_CASES)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("name", BACKEND_CASES)
def test_backend_node_case(cases, name, isa):
    model, data_sets = cases[name]
    for inputs, expected in data_sets:
        m, feed = with_weights_as_initializers(model, inputs)
        with using_isa(isa):
            got = rnnfast.onnx.load(m)(**feed)
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert g.shape == e.shape
            np.testing.assert_allclose(g, e, **TOL)


def _feed(rng, model, T=5, B=3, ragged=True):
    """Random values for a model's inputs (lengths include T and 1 when ragged)."""
    feed = {}
    for info in model.graph.input:
        dims = [d.dim_value or {"T": T, "B": B}[d.dim_param] for d in info.type.tensor_type.shape.dim]
        if info.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            feed[info.name] = rng.standard_normal(dims).astype(np.float32)
        else:
            feed[info.name] = (np.array([T, 1] + list(rng.integers(1, T + 1, B - 2)), np.int32) if ragged
                               else np.full(B, T, np.int32))
    return feed


def _ort_outputs(model, feed, op, D, layout, layers, lengths, states, seed):
    """ONNX Runtime's outputs; it has no layout=1, so that runs as the layout=0 twin (same weights)."""
    if layout == 0:
        return ort_session(model).run(None, feed)
    twin = stack(op, layers, D, H=5, I=4, layout=0, lengths=lengths, states=states, seed=seed)
    feed = {k: (v.transpose(1, 0, 2) if v.ndim == 3 else v) for k, v in feed.items()}
    out = ort_session(twin).run(None, feed)
    return [out[0].transpose(2, 0, 1, 3)] + [o.transpose(1, 0, 2) for o in out[1:]]


CONFIGS = [(op, D, layout, layers) for op in ("RNN", "LSTM", "GRU") for D in (1, 2) for layout in (0, 1)
           for layers in (1, 2)]


@pytest.mark.parametrize("lengths,states", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("op,D,layout,layers", CONFIGS)
def test_random_graph_against_onnxruntime(op, D, layout, layers, lengths, states):
    seed = zlib.crc32(repr((op, D, layout, layers, lengths, states)).encode())
    model = stack(op, layers, D, H=5, I=4, layout=layout, lengths=lengths, states=states, seed=seed)
    feed = _feed(np.random.default_rng(seed), model)
    run = rnnfast.onnx.load(model)
    got, want = run(**feed), _ort_outputs(model, feed, op, D, layout, layers, lengths, states, seed)
    assert [o.name for o in model.graph.output] == run.output_names
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == np.float32 and g.flags.c_contiguous
        np.testing.assert_allclose(g, w, **TOL)
    assert isinstance(run.module, getattr(nn, op)) and run.module.num_layers == layers
    assert run.module.bidirectional == (D == 2)


VARIANTS = [("LSTM", dict(direction="reverse")), ("RNN", dict(direction="reverse")),
            ("GRU", dict(direction="reverse", linear_before_reset=0)), ("GRU", dict(linear_before_reset=0)),
            ("GRU", dict(direction="bidirectional", linear_before_reset=0)), ("LSTM", dict(peepholes=True)),
            ("LSTM", dict(peepholes=True, direction="bidirectional"))]


def _with_peepholes(model, seed):
    rng = np.random.default_rng(seed)
    for node in model.graph.node:
        if node.op_type == "LSTM":
            D = 2 if any(a.s == b"bidirectional" for a in node.attribute) else 1
            H = next(a.i for a in node.attribute if a.name == "hidden_size")
            while len(node.input) < 7:
                node.input.append("")
            node.input.append(f"P_{node.name}")
            model.graph.initializer.append(onnx.numpy_helper.from_array(
                rng.uniform(-0.8, 0.8, (D, 3 * H)).astype(np.float32), f"P_{node.name}"))
    return model


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("op,attrs", VARIANTS)
def test_cell_variants_against_onnxruntime(op, attrs, layers):
    """Reverse-only layers, Cho et al.'s GRU, peephole LSTMs: ORT's outputs."""
    attrs = dict(attrs)
    D = 2 if attrs.get("direction") == "bidirectional" else 1
    peep = attrs.pop("peepholes", False)
    model = stack(op, layers, D, H=5, I=4, lengths=True, states=True, seed=11, attrs=attrs)
    model = _with_peepholes(model, 12) if peep else model
    feed = _feed(np.random.default_rng(13), model)
    run = rnnfast.onnx.load(model)
    for g, w in zip(run(**feed), ort_session(model).run(None, feed)):
        np.testing.assert_allclose(g, w, **TOL)


@pytest.mark.parametrize("activation", ["Relu", "Tanh"])
def test_rnn_activations(activation):
    model = stack("RNN", 2, 2, H=6, I=3, lengths=True, attrs=dict(activations=[activation] * 2), seed=3)
    feed = _feed(np.random.default_rng(1), model)
    run = rnnfast.onnx.load(model)
    assert run.module.nonlinearity == activation.lower()
    for g, w in zip(run(**feed), ort_session(model).run(None, feed)):
        np.testing.assert_allclose(g, w, **TOL)


def test_no_bias_and_default_lstm_activations_spelled_out():
    model = stack("LSTM", 2, 1, H=4, I=3, bias=False, attrs=dict(activations=["Sigmoid", "Tanh", "Tanh"]))
    feed = _feed(np.random.default_rng(2), model)
    run = rnnfast.onnx.load(model)
    assert not run.module.bias
    for g, w in zip(run(**feed), ort_session(model).run(None, feed)):
        np.testing.assert_allclose(g, w, **TOL)


def test_all_zero_peepholes_are_the_plain_lstm():
    model = stack("LSTM", 1, 2, H=4, I=3)
    node = model.graph.node[0]
    node.input.extend(["", "", "P"])  # X W R B lens [initial_h initial_c] P
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.zeros((2, 12), np.float32), "P"))
    feed = _feed(np.random.default_rng(3), model)
    for g, w in zip(rnnfast.onnx.load(model)(**feed), ort_session(model).run(None, feed)):
        np.testing.assert_allclose(g, w, **TOL)


def test_omitted_optional_inputs_mean_full_lengths_and_zero_states():
    model = stack("GRU", 2, 2, H=5, I=4, lengths=True, states=True, seed=4)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 3, 4)).astype(np.float32)
    run = rnnfast.onnx.load(model)
    zeros = np.zeros((2, 3, 5), np.float32)
    full = ort_session(model).run(None, dict(X=x, lens=np.full(3, 6, np.int32), h0=zeros, h1=zeros))
    for g, w in zip(run(X=x), full):
        np.testing.assert_allclose(g, w, **TOL)
    part = run(X=x, h1=zeros + 0.5)  # one layer's state given, the other zeros
    want = ort_session(model).run(None, dict(X=x, lens=np.full(3, 6, np.int32), h0=zeros, h1=zeros + 0.5))
    for g, w in zip(part, want):
        np.testing.assert_allclose(g, w, **TOL)


def test_run_has_onnxruntime_signature():
    model = stack("LSTM", 1, 1, H=3, I=2)
    feed = _feed(np.random.default_rng(6), model)
    run = rnnfast.onnx.load(model)
    y, y_h, y_c = run.run(None, feed)
    (c_only,) = run.run(["Y_c0"], feed)
    np.testing.assert_array_equal(c_only, y_c)
    with pytest.raises(ValueError, match="output_names: 'nope' is not an output"):
        run.run(["nope"], feed)


# round trips --------------------------------------------------------------------------------------
def _variant_modules():
    """The cell variants, exported with their ONNX attributes."""
    return [lambda: nn.LSTM(5, 6, num_layers=2, direction="reverse", seed=7),
            lambda: nn.RNN(5, 4, direction="reverse", seed=8),
            lambda: nn.GRU(5, 6, num_layers=2, bidirectional=True, linear_before_reset=False, seed=9),
            lambda: nn.LSTM(5, 4, num_layers=2, bidirectional=True, peepholes=True, seed=10)]


@pytest.mark.parametrize("make", EXPORTABLE + _variant_modules())
def test_round_trip_with_rnnfast_export(tmp_path, make):
    m = make().eval()
    rnnfast.onnx.export(m, tmp_path / "m.onnx")
    run = rnnfast.onnx.load(tmp_path / "m.onnx")
    # the graph's Transpose keeps batch_first outside the stack; zero biases load as bias=False
    assert str(run.module) == str(m).replace(", batch_first=True", "")
    for name, value in m.state_dict().items():
        np.testing.assert_array_equal(run.module.state_dict()[name], value)
    rng = np.random.default_rng(0)
    T, B = 6, 4
    x = rng.standard_normal((B, T, 5) if m.batch_first else (T, B, 5)).astype(np.float32)
    lens = np.array([6, 1, 3, 5], np.int32)
    shape = (m.num_layers * m.num_directions, B, m.hidden_size)
    h0, c0 = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    lstm = m.cell == "lstm"
    y, st = m(x, (h0, c0) if lstm else h0, lengths=lens)
    got = run(x=x, lengths=lens, h0=h0, **(dict(c0=c0) if lstm else {}))
    for g, w in zip(got, [y] + (list(st) if lstm else [st])):
        np.testing.assert_allclose(g, w, **TOL)
    y, _ = m(x)  # lengths and states left out: full lengths, zeros
    np.testing.assert_allclose(run(x=x)[0], y, **TOL)


@pytest.mark.parametrize("opset", [9, 11, 17])  # 9, 11: Slice/Squeeze/Unsqueeze take attributes, not inputs
@pytest.mark.parametrize("kind,kw", [("LSTM", dict(num_layers=2, bidirectional=True, batch_first=True)),
                                     ("GRU", dict(num_layers=2)), ("RNN", dict(nonlinearity="relu")),
                                     ("LSTM", dict(num_layers=3))])
def test_torch_onnx_export_loads(tmp_path, torch, kind, kw, opset):
    import warnings
    t = getattr(torch.nn, kind)(4, 5, **kw).eval()
    x = torch.randn(3, 6, 4)
    lstm = kind == "LSTM"
    names = ["y", "h"] + (["c"] if lstm else [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(t, (x,), str(tmp_path / "t.onnx"), dynamo=False, opset_version=opset, input_names=["x"],
                          output_names=names, dynamic_axes={"x": {0: "a", 1: "b"}})
    run = rnnfast.onnx.load(str(tmp_path / "t.onnx"))
    with torch.no_grad():
        y, st = t(x)
    want = [y] + (list(st) if lstm else [st])
    got = run(x=x.numpy())
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), **TOL)
    x2 = torch.randn(7, 2, 4)  # other sizes through the same graph
    with torch.no_grad():
        y2, _ = t(x2)
    np.testing.assert_allclose(run(x=x2.numpy())[0], y2.numpy(), **TOL)


def test_loaded_module_trains_and_exports(tmp_path):
    """What the README's support matrix says of a loaded .module: it trains and deploys like any other."""
    run = rnnfast.onnx.load(stack("GRU", 2, 2, H=4, I=3, seed=9))
    m = run.module.train()
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    y, _ = m(x)
    dx = m.backward(np.ones_like(y))
    assert dx.shape == x.shape and np.all(np.isfinite(dx)) and np.any(m.weight_ih_l1_reverse.grad != 0)
    rnnfast.export(m.eval(), tmp_path / "m.rnnfast")
    np.testing.assert_allclose(rnnfast.load_export(tmp_path / "m.rnnfast")(x)[0], y, **TOL)


def test_backend_cases_read_from_data_files(tmp_path, cases):
    """Wheels that ship onnx/backend/test/data/node are read from the files; same cases as generated."""
    from onnx_models import _case_files
    for name, (model, data_sets) in cases.items():
        for i, (inputs, outputs) in enumerate(data_sets):
            d = tmp_path / name / f"test_data_set_{i}"
            d.mkdir(parents=True)
            for prefix, arrays in (("input", inputs), ("output", outputs)):
                for j, a in enumerate(arrays):
                    (d / f"{prefix}_{j}.pb").write_bytes(onnx.numpy_helper.from_array(a).SerializeToString())
        onnx.save(model, tmp_path / name / "model.onnx")
    read = _case_files(str(tmp_path))
    assert sorted(read) == sorted(cases)
    for name, (model, data_sets) in cases.items():
        assert read[name][0] == model
        for (ins, outs), (rins, routs) in zip(data_sets, read[name][1]):
            for a, b in zip(ins + outs, rins + routs):
                np.testing.assert_array_equal(a, b)


def test_weights_from_constant_nodes_and_folded_glue():
    """W as Unsqueeze of a 2-D initializer, R as a Constant node: both folded at load."""
    model = stack("GRU", 1, 1, H=4, I=3, lengths=True, seed=21)
    feed = _feed(np.random.default_rng(22), model)
    want = ort_session(model).run(None, feed)
    inits = {t.name: t for t in model.graph.initializer}
    W, R = (onnx.numpy_helper.to_array(inits[n]) for n in ("W0", "R0"))
    model.graph.initializer.remove(inits["W0"])
    model.graph.initializer.remove(inits["R0"])
    model.graph.initializer.extend([onnx.numpy_helper.from_array(W[0], "W2d"),
                                    onnx.numpy_helper.from_array(np.array([0], np.int64), "axis0")])
    model.graph.node.insert(0, onnx.helper.make_node("Unsqueeze", ["W2d", "axis0"], ["W0"]))
    model.graph.node.insert(0, onnx.helper.make_node("Constant", [], ["R0"],
                                                     value=onnx.numpy_helper.from_array(R)))
    run = rnnfast.onnx.load(model)
    assert run.input_names == ["X", "lens"]
    for g, w in zip(run(**feed), want):
        np.testing.assert_allclose(g, w, **TOL)
