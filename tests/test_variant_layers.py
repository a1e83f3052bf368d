"""nn.LSTM(peepholes=True), nn.GRU(linear_before_reset=False) and direction="reverse": the modules
(stacked, bidirectional, ragged, train/eval, streams, cells) against the scalar twin."""
import pickle

import numpy as np
import pytest

from rnnfast import _core, nn
from helpers import ISAS, randn, using_isa

# (class, constructor options, what the twin takes)
VARIANTS = {
    "peephole": (nn.LSTM, dict(peepholes=True)),
    "reset_before": (nn.GRU, dict(linear_before_reset=False)),
    "reverse_lstm": (nn.LSTM, dict(direction="reverse")),
    "reverse_peephole": (nn.LSTM, dict(direction="reverse", peepholes=True)),
    "reverse_gru_reset_before": (nn.GRU, dict(direction="reverse", linear_before_reset=False)),
    "reverse_rnn": (nn.RNN, dict(direction="reverse")),
}


def twin_options(m, k, d):
    opts = {}
    if m.peepholes:
        opts["peephole"] = m._peep_params[k][d].data
    if not m.linear_before_reset:
        opts["linear_before_reset"] = False
    return opts


def reference_stack(m, x, lengths):
    """The module's forward, layer by layer and direction by direction, through the twin (float64)."""
    T, B, _ = x.shape
    layer_in, hn, cn = x.astype(np.float64), [], []
    for k in range(m.num_layers):
        ys = []
        for d in range(m.num_directions):
            w = [None if p is None else p.data.astype(np.float64) for p in m._layer_params[k][d]]
            opts = {n: (v.astype(np.float64) if isinstance(v, np.ndarray) else v) for n, v in twin_options(m, k, d).items()}
            y, h, c = _core.reference_forward(m.cell, np.ascontiguousarray(layer_in), lengths, m._runs_reverse(d),
                                              *w, None, None, **opts)
            ys.append(y)
            hn.append(h)
            cn.append(c)
        layer_in = np.concatenate(ys, axis=2)
    return layer_in, np.stack(hn), np.stack(cn)


def make(variant, layers=2, seed=0, **kw):
    cls, opts = VARIANTS[variant]
    return cls(5, 12, num_layers=layers, seed=seed, **opts, **kw)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("ragged", [False, True], ids=["dense", "ragged"])
def test_module_forward_matches_twin(isa, variant, ragged):
    rng = np.random.default_rng(len(variant) + ragged)
    m = make(variant)
    T, B = 7, 4
    x = randn(rng, T, B, 5)
    lengths = np.array([7, 3, 5, 1], np.int32) if ragged else np.full(B, T, np.int32)
    y_ref, hn_ref, cn_ref = reference_stack(m, x, lengths)
    with using_isa(isa):
        for mode in (m.train, m.eval):
            mode()
            y, state = m(x, lengths=lengths if ragged else None)
            hn = state[0] if m.cell == "lstm" else state
            np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(hn, hn_ref, rtol=1e-5, atol=1e-5)
            if m.cell == "lstm":
                np.testing.assert_allclose(state[1], cn_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_module_gradients_match_twin(isa, variant, bidirectional):
    """One layer: every parameter's gradient and the input's against the twin's backward."""
    cls, opts = VARIANTS[variant]
    if bidirectional and opts.get("direction") == "reverse":
        opts = {k: v for k, v in opts.items() if k != "direction"}
    m = cls(5, 12, seed=1, bidirectional=bidirectional, **opts)
    rng = np.random.default_rng(3)
    T, B, H = 6, 3, 12
    x, lengths = randn(rng, T, B, 5), np.array([6, 2, 4], np.int32)
    dy = randn(rng, T, B, m.num_directions * H)
    with using_isa(isa):
        m.train()
        m.zero_grad()
        m(x, lengths=lengths)
        dx = m.backward(dy)
    dx_ref = np.zeros_like(x, dtype=np.float64)
    for d in range(m.num_directions):
        w = [p.data for p in m._layer_params[0][d]]
        g = _core.reference_backward(m.cell, x, lengths, m._runs_reverse(d), *w, None, None,
                                     np.ascontiguousarray(dy[:, :, d * H:(d + 1) * H]), None, None,
                                     **twin_options(m, 0, d))
        dx_ref += g["dx"]
        names = ["w_ih", "w_hh", "b_ih", "b_hh"]
        params = list(m._layer_params[0][d])
        if m.peepholes:
            names.append("w_p")
            params.append(m._peep_params[0][d])
        for name, p in zip(names, params):
            np.testing.assert_allclose(p.grad, g[name], rtol=2e-4, atol=2e-5, err_msg=f"{name}, direction {d}")
    np.testing.assert_allclose(dx, dx_ref, rtol=2e-4, atol=2e-5)


def test_reverse_layer_is_the_reverse_half_of_a_bidirectional_one():
    rng = np.random.default_rng(5)
    bi = nn.GRU(5, 8, bidirectional=True, seed=2)
    rev = nn.GRU(5, 8, direction="reverse", seed=3)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        getattr(rev, name + "_l0_reverse").data = getattr(bi, name + "_l0_reverse").data
    x, lengths = randn(rng, 6, 3, 5), np.array([6, 1, 4], np.int32)
    y_bi, h_bi = bi(x, lengths=lengths)
    y_rev, h_rev = rev(x, lengths=lengths)
    np.testing.assert_allclose(y_rev, y_bi[:, :, 8:], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(h_rev[0], h_bi[1], rtol=1e-6, atol=1e-6)
    # ONNX's meaning of lengths: sample 1 (length 1) sees only x[0]; its output starts at step 0
    assert np.all(y_rev[1:, 1] == 0)


def test_reverse_layer_parameter_names_and_repr():
    m = nn.LSTM(3, 4, num_layers=2, direction="reverse", peepholes=True, seed=0)
    names = set(m.state_dict())
    assert {"weight_ih_l0_reverse", "weight_p_l0_reverse", "weight_hh_l1_reverse", "weight_p_l1_reverse"} <= names
    assert not any(n.endswith(("_l0", "_l1")) for n in names)
    assert m.state_dict()["weight_ih_l1_reverse"].shape == (16, 4)  # one direction: H inputs
    assert "direction='reverse'" in repr(m) and "peepholes=True" in repr(m)
    assert "linear_before_reset=False" in repr(nn.GRU(3, 4, linear_before_reset=False))


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_pickles_with_its_options(variant):
    m = make(variant)
    x = randn(np.random.default_rng(0), 4, 2, 5)
    m.eval()
    clone = pickle.loads(pickle.dumps(m))
    assert (clone.direction, clone.peepholes, clone.linear_before_reset) == \
        (m.direction, m.peepholes, m.linear_before_reset)
    np.testing.assert_array_equal(clone(x)[0], m(x)[0])


def test_module_pickled_before_the_variants_loads_as_the_default_cell():
    m = nn.LSTM(3, 4, bidirectional=True, seed=0)
    state = m.__getstate__()
    for name in ("direction", "peepholes", "linear_before_reset", "_peep_params"):
        del state[name]
    old = nn.LSTM.__new__(nn.LSTM)
    old.__setstate__(state)
    assert (old.direction, old.peepholes, old.linear_before_reset) == ("bidirectional", False, True)
    x = randn(np.random.default_rng(1), 3, 2, 3)
    m.eval(), old.eval()
    np.testing.assert_array_equal(old(x)[0], m(x)[0])


def test_direction_arguments_are_checked():
    with pytest.raises(ValueError, match="direction: 'reverse' conflicts with bidirectional=True"):
        nn.LSTM(3, 4, bidirectional=True, direction="reverse")
    with pytest.raises(ValueError, match="direction: 'forward' conflicts"):
        nn.GRU(3, 4, bidirectional=True, direction="forward")
    with pytest.raises(ValueError, match="direction: expected 'forward', 'reverse' or 'bidirectional', got 'back'"):
        nn.RNN(3, 4, direction="back")
    assert nn.RNN(3, 4, direction="bidirectional").bidirectional
    assert nn.RNN(3, 4, bidirectional=True, direction="bidirectional").num_directions == 2
    with pytest.raises(ValueError, match="stream: a reverse model needs the whole sequence"):
        nn.LSTM(3, 4, direction="reverse").stream()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("variant", ["peephole", "reset_before"])
@pytest.mark.parametrize("weights", ["float32", "bfloat16"])
def test_variant_stream_steps_equal_whole_sequence(isa, variant, weights):
    rng = np.random.default_rng(9)
    m = make(variant)
    m.eval()
    x = randn(rng, 6, 3, 5)
    with using_isa(isa):
        y, _ = m(x)
        s = m.stream(3, weights=weights)
        steps = np.stack([s.step(x[t]) for t in range(6)])
    tol = 1e-6 if weights == "float32" else 3e-2
    np.testing.assert_allclose(steps, y[:, :, :] if m.num_layers else y, rtol=tol, atol=tol)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("kind, opts", [(nn.LSTMCell, dict(peepholes=True)),
                                        (nn.GRUCell, dict(linear_before_reset=False))], ids=["peephole", "reset_before"])
def test_variant_cells_match_twin(isa, kind, opts):
    rng = np.random.default_rng(4)
    c = kind(5, 9, seed=0, **opts)
    x, h0 = randn(rng, 3, 5), randn(rng, 3, 9)
    lstm = kind is nn.LSTMCell
    c0 = randn(rng, 3, 9) if lstm else None
    w = [p.data for p in (c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh)]
    twin = dict(peephole=c.weight_p.data) if lstm else dict(linear_before_reset=False)
    _, h_ref, c_ref = _core.reference_forward(c.cell, x[None], np.ones(3, np.int32), False, *w, h0, c0, **twin)
    dh = randn(rng, 3, 9)
    g = _core.reference_backward(c.cell, x[None], np.ones(3, np.int32), False, *w, h0, c0, dh[None], None, None,
                                 **twin)
    with using_isa(isa):
        c.eval()
        out = c(x, (h0, c0) if lstm else h0)
        np.testing.assert_allclose(out[0] if lstm else out, h_ref, rtol=1e-5, atol=1e-6)
        c.train()
        c.zero_grad()
        c(x, (h0, c0) if lstm else h0)
        dx = c.backward(dh)
    np.testing.assert_allclose(dx, g["dx"][0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(c.weight_hh.grad, g["w_hh"], rtol=1e-4, atol=1e-5)
    if lstm:
        np.testing.assert_allclose(out[1], c_ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(c.weight_p.grad, g["w_p"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("make, what", [(lambda: nn.LSTM(3, 4, peepholes=True), "peepholes=True"),
                                        (lambda: nn.GRU(3, 4, linear_before_reset=False), "linear_before_reset=False"),
                                        (lambda: nn.RNN(3, 4, direction="reverse"), "direction='reverse'"),
                                        (lambda: nn.LSTMCell(3, 4, peepholes=True), "peepholes=True")])
def test_torch_interop_refuses_the_variants_torch_has_not(make, what):
    pytest.importorskip("torch")
    from rnnfast import interop
    with pytest.raises(ValueError, match=f"to_torch_state_dict: model has {what}, which torch.nn has not"):
        interop.to_torch_state_dict(make())
    with pytest.raises(ValueError, match="weight_p_.*build rnnfast.nn.LSTM.*peepholes=True"):
        interop.from_torch(nn.LSTM(3, 4, peepholes=True).state_dict())


@pytest.mark.parametrize("kind, option", [("LSTM", dict(peepholes=True)), ("GRU", dict(linear_before_reset=False)),
                                          ("RNN", dict(direction="reverse"))])
def test_rnnfast_torch_modules_name_the_nn_variant(kind, option):
    pytest.importorskip("torch")
    import rnnfast.torch
    with pytest.raises(ValueError, match=f"rnnfast.torch.{kind}: {next(iter(option))}: torch.nn.{kind} has no such"):
        getattr(rnnfast.torch, kind)(3, 4, **option)


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("cls, opts", [(nn.GRU, dict(linear_before_reset=False)), (nn.LSTM, dict(peepholes=True))],
                         ids=["gru_reset_before", "lstm_peephole"])
def test_variant_matches_onnx_numpy_reference(cls, opts, direction):
    """ONNX's own numpy reference of its operators (onnx.backend.test.case.node), P and
    linear_before_reset=0 included: an oracle written by others."""
    pytest.importorskip("onnx")
    from onnx.backend.test.case.node.gru import GRUHelper
    from onnx.backend.test.case.node.lstm import LSTMHelper
    from rnnfast.onnx import onnx_gate_order

    m = cls(4, 6, direction=direction, seed=3, **opts).eval()
    x = randn(np.random.default_rng(7), 5, 2, 4)
    D, H, cell = m.num_directions, 6, m.cell
    W, R, B, P = [], [], [], []
    for d in range(D):
        w_ih, w_hh, b_ih, b_hh = (p.data for p in m._layer_params[0][d])
        W.append(onnx_gate_order(w_ih, cell, H))
        R.append(onnx_gate_order(w_hh, cell, H))
        B.append(np.concatenate([onnx_gate_order(b_ih, cell, H), onnx_gate_order(b_hh, cell, H)]))
        if m.peepholes:
            P.append(m._peep_params[0][d].data[[0, 2, 1]].reshape(-1))
    args = dict(X=x, W=np.stack(W), R=np.stack(R), B=np.stack(B), direction=direction)
    if m.peepholes:
        y_ref, h_ref, _ = LSTMHelper(P=np.stack(P), **args).step()
    else:
        y_ref, h_ref = GRUHelper(linear_before_reset=0, **args).step()
    y, state = m(x)
    hn = state[0] if m.peepholes else state
    np.testing.assert_allclose(y, y_ref.transpose(0, 2, 1, 3).reshape(5, 2, D * H), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(hn, h_ref, rtol=1e-5, atol=1e-5)
