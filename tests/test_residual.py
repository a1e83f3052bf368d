"""residual=True on nn.RNN/LSTM/GRU: layer k > 0 outputs its layer's output plus its input.

Gradients against central differences of a float64 residual stack built from the scalar reference
kernels, on every ISA; then every path a model goes through (eval, streams, the deployment file,
ONNX, torch) either computes the same thing or refuses it clearly.
"""
import numpy as np
import pytest

import rnnfast
from rnnfast import _core, nn
from helpers import ISAS, randn, using_isa

LAYERS = {"rnn_tanh": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def make(cell, I, H, L, bidirectional=False, **kw):
    return LAYERS[cell](I, H, num_layers=L, bidirectional=bidirectional, residual=True, seed=3, **kw)


def reference_stack(m, x, lengths, params=None):
    """Float64 forward of a residual stack from the reference kernels: (y, h_n (L*D, B, H))."""
    params = params or {k: v.astype(np.float64) for k, v in m.state_dict().items()}
    layer_in, hn = x.astype(np.float64), []
    for k in range(m.num_layers):
        outs = []
        for d in range(m.num_directions):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            y, h, _ = _core.reference_forward(m.cell, layer_in, lengths, bool(d), params["weight_ih" + sfx],
                                              params["weight_hh" + sfx], params["bias_ih" + sfx],
                                              params["bias_hh" + sfx], None, None)
            outs.append(y)
            hn.append(h)
        y = np.concatenate(outs, axis=2)
        layer_in = y + layer_in if k > 0 else y
    return layer_in, np.stack(hn)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("cell", list(LAYERS))
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_gradients_match_central_differences(isa, cell, bidirectional):
    """The module's backward (float32 kernels) against central differences in float64 of the
    reference stack, for the input and every parameter; ragged lengths."""
    rng = np.random.default_rng(5)
    T, B, I, H, L = 5, 3, 4, 3, 3
    m = make(cell, I, H, L, bidirectional)
    x = randn(rng, T, B, I)
    lengths = np.array([5, 2, 4], np.int32)
    D = m.num_directions
    r_y, r_h = randn(rng, T, B, D * H), randn(rng, L * D, B, H)
    with using_isa(isa):
        y, state = m(x, lengths=lengths)
        hn = state[0] if cell == "lstm" else state
        grad_state = (r_h, None) if cell == "lstm" else r_h
        m.zero_grad()
        dx = m.backward(r_y, grad_state)
    ref_y, ref_h = reference_stack(m, x, lengths)
    np.testing.assert_allclose(y, ref_y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(hn, ref_h, rtol=1e-5, atol=1e-5)

    base = {k: v.astype(np.float64) for k, v in m.state_dict().items()}
    base["x"] = x.astype(np.float64)

    def loss(p):
        yy, hh = reference_stack(m, p["x"], lengths, p)
        return float((yy * r_y).sum() + (hh * r_h).sum())

    eps = 1e-6
    grads = dict(m.named_parameters())
    for name, value in base.items():
        num = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            q = dict(base)
            q[name] = value.copy()
            q[name][idx] += eps
            up = loss(q)
            q[name][idx] -= 2 * eps
            num[idx] = (up - loss(q)) / (2 * eps)
        got = dx if name == "x" else grads[name].grad
        np.testing.assert_allclose(got, num, rtol=2e-4, atol=2e-5, err_msg=f"{isa} {cell} {name}")


def test_skip_is_the_layers_input_plus_output():
    """Layer by layer: a plain stack with the same weights, the skips added by hand."""
    rng = np.random.default_rng(0)
    res = make("gru", 6, 4, 3)
    plain = nn.GRU(6, 4, num_layers=3, seed=3)
    plain.load_state_dict(res.state_dict())
    x = randn(rng, 7, 2, 6)
    y, _ = res.eval()(x)
    layer_in = x
    for k in range(3):
        one = nn.GRU(6 if k == 0 else 4, 4, seed=0).eval()
        one.load_state_dict({n.replace(f"_l{k}", "_l0"): v for n, v in res.state_dict().items() if f"_l{k}" in n})
        out = one(layer_in)[0]
        layer_in = out + layer_in if k else out
    np.testing.assert_allclose(y, layer_in, rtol=1e-5, atol=1e-6)
    assert not np.allclose(plain.eval()(x)[0], y)


def test_dropout_masks_the_skip_gradient_too():
    """With dropout between layers the skip adds the dropped-out input; backward matches a float64
    twin that reuses the same masks (drawn from the same seeded generator)."""
    rng = np.random.default_rng(1)
    m = make("lstm", 3, 4, 3, dropout=0.5)
    x, r = randn(rng, 4, 2, 3), randn(rng, 4, 2, 4)
    m.seed_dropout(9)
    y, _ = m(x)
    dx = m.backward(r)
    m.seed_dropout(9)
    masks = []
    for k in range(1, 3):  # the masks forward drew, in its order
        masks.append(m._dropout_rng.random((4, 2, 4), dtype=np.float32) >= 0.5)
    twin = make("lstm", 3, 4, 3).train()
    twin.load_state_dict(m.state_dict())
    w = {k: v.astype(np.float64) for k, v in m.state_dict().items()}

    def forward(xx):
        layer_in = xx
        for k in range(3):
            if k:
                layer_in = layer_in * masks[k - 1] * 2.0
            sfx = f"_l{k}"
            out = _core.reference_forward("lstm", layer_in, np.full(2, 4, np.int32), False, w["weight_ih" + sfx],
                                          w["weight_hh" + sfx], w["bias_ih" + sfx], w["bias_hh" + sfx], None, None)[0]
            layer_in = out + layer_in if k else out
        return layer_in

    np.testing.assert_allclose(y, forward(x.astype(np.float64)), rtol=1e-5, atol=1e-5)
    num = np.zeros(x.shape)
    for idx in np.ndindex(x.shape):
        xp = x.astype(np.float64)
        xp[idx] += 1e-6
        up = (forward(xp) * r).sum()
        xp[idx] -= 2e-6
        num[idx] = (up - (forward(xp) * r).sum()) / 2e-6
    np.testing.assert_allclose(dx, num, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("cell", list(LAYERS))
def test_stream_steps_through_the_skips(isa, cell):
    rng = np.random.default_rng(2)
    m = make(cell, 5, 8, 4).eval()
    x = randn(rng, 6, 3, 5)
    with using_isa(isa):
        y, state = m(x)
        s = m.stream(3)
        steps = np.stack([s.step(x[t]).copy() for t in range(6)])
    np.testing.assert_allclose(steps, y, rtol=1e-5, atol=1e-5)
    want = state[0] if cell == "lstm" else state
    got = s.state[0] if cell == "lstm" else s.state
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_export_round_trip_records_residual(tmp_path):
    from rnnfast.deploy import read
    rng = np.random.default_rng(3)
    m = make("lstm", 4, 5, 3).eval()
    rnnfast.export(m, tmp_path / "m.rnnfast")
    meta, _ = read(tmp_path / "m.rnnfast")
    assert meta["residual"] == "1" and meta["format_version"] == "2"  # a version-1 reader refuses it
    back = rnnfast.load_export(tmp_path / "m.rnnfast")
    assert back.residual
    x = randn(rng, 6, 2, 4)
    np.testing.assert_array_equal(back(x)[0], m(x)[0])
    rnnfast.export(nn.LSTM(4, 5, num_layers=3, seed=0), tmp_path / "plain.rnnfast")
    meta, _ = read(tmp_path / "plain.rnnfast")
    assert "residual" not in meta and meta["format_version"] == "1"  # plain files stay readable by old readers


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_onnx_export_adds_the_skips(tmp_path, bidirectional):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(4)
    m = make("gru", 3, 4, 3, bidirectional).eval()
    rnnfast.onnx.export(m, tmp_path / "m.onnx")
    x, lengths = randn(rng, 5, 2, 3), np.array([5, 3], np.int32)
    D = m.num_directions
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    y, hn = sess.run(None, {"x": x, "lengths": lengths, "h0": np.zeros((3 * D, 2, 4), np.float32)})
    want_y, want_h = m(x, lengths=lengths)
    np.testing.assert_allclose(y, want_y, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(hn, want_h, rtol=1e-4, atol=1e-5)


def test_torch_paths_refuse_residual(torch):
    import rnnfast.torch as rt
    with pytest.raises(ValueError, match="to_torch_state_dict: model: .*residual"):
        rnnfast.interop.to_torch_state_dict(make("lstm", 3, 3, 2))
    seq = nn.Sequential(nn.Linear(2, 3), make("gru", 3, 3, 2))
    with pytest.raises(ValueError, match="residual"):
        rnnfast.interop.to_torch_state_dict(seq)
    assert list(rnnfast.interop.to_torch_state_dict(nn.LSTM(3, 3, num_layers=2)))  # plain stacks still move
    for cls in (rt.RNN, rt.LSTM, rt.GRU):
        with pytest.raises(ValueError, match=r"rnnfast\.torch\.\w+: residual: .*rnnfast\.nn"):
            cls(3, 3, num_layers=2, residual=True)


def test_bad_residual_arguments():
    with pytest.raises(ValueError, match="residual: .*num_layers >= 2, got 1"):
        nn.LSTM(3, 3, residual=True)
    with pytest.raises(TypeError, match="residual: expected a bool, got str"):
        nn.GRU(3, 3, num_layers=2, residual="yes")
    m = nn.RNN(3, 3, num_layers=2, residual=True)
    assert "residual=True" in repr(m) and not nn.RNN(3, 3).residual


def test_pickle_and_checkpoint_keep_residual(tmp_path):
    import pickle
    rng = np.random.default_rng(6)
    m = make("lstm", 2, 3, 2).eval()
    x = randn(rng, 4, 1, 2)
    back = pickle.loads(pickle.dumps(m))
    assert back.residual
    np.testing.assert_array_equal(back(x)[0], m(x)[0])
