"""The layer-normalised LSTM (layer_norm=True, Ba, Kiros & Hinton 2016): the kernels against the
scalar twin on every ISA, the twin against finite differences, nn.LSTM against a torch autograd
composition of the same equations, and the paths without it refusing clearly."""
import copy
import pickle

import numpy as np
import pytest

from rnnfast import _core, nn
import lstm_options
from helpers import ISAS, randn, using_isa
from lstm_options import assert_pair_equals_separate, packed_of

SHAPES = [(1, 1, 1, 1), (6, 3, 5, 17), (9, 13, 20, 33), (4, 7, 8, 70)]  # (T, B, I, H)
GRADS = ("w_ih", "w_hh", "b_ih", "b_hh")  # without the option's


def make_problem(T, B, I, H, rng, dtype=np.float32):
    return lstm_options.make_problem(T, B, I, H, rng, layer_norm=True, dtype=dtype)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T%dB%dI%dH%d" % s)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_optimised_matches_double_reference(isa, shape, reverse):
    rng = np.random.default_rng(sum(shape) + 7 * reverse)
    p, lengths = make_problem(*shape, rng)
    with using_isa(isa):
        assert packed_of(p, False).layer_norm
        lstm_options.assert_matches_double_twin(p, lengths, reverse, 3e-5)


@pytest.mark.parametrize("isa", ISAS)
def test_bitwise_the_same_for_any_thread_count(isa):
    rng = np.random.default_rng(4)
    p, lengths = make_problem(10, 27, 19, 75, rng)
    with using_isa(isa):
        lstm_options.assert_same_bits_for_thread_counts(p, lengths)


@pytest.mark.parametrize("isa", ISAS)
def test_bidirectional_pair_equals_separate_directions(isa):
    rng = np.random.default_rng(9)
    pf, lengths = make_problem(7, 5, 6, 19, rng)
    pb, _ = make_problem(7, 5, 6, 19, rng)
    pb["x"] = pf["x"]
    with using_isa(isa):
        assert_pair_equals_separate(pf, pb, lengths)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_reference_gradients_match_finite_differences(reverse):
    """The twin's backward (float64) against central differences of its forward."""
    p, _ = make_problem(4, 2, 3, 5, np.random.default_rng(13), dtype=np.float64)
    lstm_options.assert_twin_matches_differences(p, np.array([4, 2], np.int32), reverse)


def _torch_layer_norm_lstm(torch, m, x, h0, c0, lengths):
    """The same equations in torch autograd (float64), one sample and step at a time, ragged as
    rnnfast's lengths: the oracle for nn.LSTM(layer_norm=True)."""
    P = {n: torch.tensor(p.data, dtype=torch.float64, requires_grad=True) for n, p in m.named_parameters()}
    LN = lambda v, g, b: torch.nn.functional.layer_norm(v, (v.shape[-1],), g, b, 1e-5)  # noqa: E731
    layer_in = x.transpose(0, 1) if m.batch_first else x
    T, B, H, D = layer_in.shape[0], layer_in.shape[1], m.hidden_size, m.num_directions
    hn, cn = [], []
    for k in range(m.num_layers):
        out = torch.zeros(T, B, D * H, dtype=torch.float64)
        for d in range(D):
            s = f"_l{k}" + ("_reverse" if d else "")
            for b in range(B):
                h, c = h0[k * D + d, b], c0[k * D + d, b]
                n = int(lengths[b])
                for step in range(n):
                    t = n - 1 - step if d else step
                    a = (LN(P["weight_ih" + s] @ layer_in[t, b], P["ln_ih_weight" + s], P["ln_ih_bias" + s])
                         + P["bias_ih" + s] + LN(P["weight_hh" + s] @ h, P["ln_hh_weight" + s], P["ln_hh_bias" + s])
                         + P["bias_hh" + s])
                    i, f, g, o = a.chunk(4)
                    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                    h = torch.sigmoid(o) * torch.tanh(LN(c, P["ln_c_weight" + s], P["ln_c_bias" + s]))
                    out = out.index_put((torch.tensor(t), torch.tensor(b), torch.arange(d * H, (d + 1) * H)), h)
                hn.append(h)
                cn.append(c)
        layer_in = out
    shape = (m.num_layers * D, B, H)
    y = layer_in.transpose(0, 1) if m.batch_first else layer_in
    return y, torch.stack(hn).reshape(shape), torch.stack(cn).reshape(shape), P


@pytest.mark.parametrize("layers,bidirectional,batch_first", [(1, False, False), (2, True, True)])
def test_lstm_matches_torch_composition(torch, layers, bidirectional, batch_first):
    """nn.LSTM(layer_norm=True), ragged, with h0 and c0: outputs, states, and the gradients of the
    input, the initial states and every parameter against torch autograd of the same equations."""
    m = nn.LSTM(5, 9, layers, batch_first=batch_first, bidirectional=bidirectional, layer_norm=True, seed=2)
    rng = np.random.default_rng(3)
    for _, p in m.named_parameters():  # off the gains' ones and biases' zeros
        p.data = p.data + randn(rng, *p.shape, scale=0.2)
    T, B, D = 6, 4, 2 if bidirectional else 1
    lengths = np.array([6, 2, 5, 1])
    x = randn(rng, B, T, 5) if batch_first else randn(rng, T, B, 5)
    h0, c0 = randn(rng, layers * D, B, 9), randn(rng, layers * D, B, 9)
    y, (hn, cn) = m(x, (h0, c0), lengths=lengths)
    gy, ghn, gcn = randn(rng, *y.shape), randn(rng, *hn.shape), randn(rng, *cn.shape)
    dx = m.backward(gy, (ghn, gcn))
    xt, h0t, c0t = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, h0, c0))
    yt, hnt, cnt, P = _torch_layer_norm_lstm(torch, m, xt, h0t, c0t, lengths)
    (sum((t * torch.tensor(g, dtype=torch.float64)).sum() for t, g in ((yt, gy), (hnt, ghn), (cnt, gcn)))).backward()
    pairs = [("y", y, yt), ("h_n", hn, hnt), ("c_n", cn, cnt), ("dx", dx, xt.grad), ("dh0", m.grad_hx[0], h0t.grad),
             ("dc0", m.grad_hx[1], c0t.grad)] + [(n, p.grad, P[n].grad) for n, p in m.named_parameters()]
    for name, ours, theirs in pairs:  # float32 against float64: errors relative to each array's scale
        ref = theirs.detach().numpy()
        assert np.abs(ours - ref).max() <= 3e-5 * (1 + np.abs(ref).max()), name


def test_parameters_state_dict_and_copies():
    m = nn.LSTM(3, 4, 2, bidirectional=True, layer_norm=True, seed=0)
    names = [n for n, _ in m.named_parameters()]
    assert names[:10] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "ln_ih_weight_l0",
                          "ln_ih_bias_l0", "ln_hh_weight_l0", "ln_hh_bias_l0", "ln_c_weight_l0", "ln_c_bias_l0"]
    assert m.ln_ih_weight_l1_reverse.shape == (16,) and m.ln_c_bias_l1.shape == (4,)
    assert np.all(m.ln_hh_weight_l0.data == 1) and np.all(m.ln_c_bias_l0.data == 0)
    assert "layer_norm=True" in repr(m)
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    m.ln_c_weight_l0.data = np.full(4, 0.5, np.float32)  # a changed gain is repacked
    want = m.eval()(x)[0]
    for other in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        np.testing.assert_array_equal(other(x)[0], want)
    fresh = nn.LSTM(3, 4, 2, bidirectional=True, layer_norm=True, seed=1).eval()
    fresh.load_state_dict(m.state_dict())
    np.testing.assert_array_equal(fresh(x)[0], want)
    assert not np.array_equal(nn.LSTM(3, 4, 2, bidirectional=True, seed=0).eval()(x)[0], want)


def test_clear_errors():
    with pytest.raises(ValueError, match="layer_norm: only an LSTM without proj_size"):
        nn.LSTM(4, 6, proj_size=2, layer_norm=True)
    with pytest.raises(ValueError, match="layer_norm: only an LSTM"):
        nn.RNNBase("gru", 4, 6, layer_norm=True)
    with pytest.raises(TypeError, match="layer_norm: expected True or False"):
        nn.LSTM(4, 6, layer_norm=1)
    # streams, bfloat16 weights, export and ONNX: test_proj_size.py::test_paths_without_the_option_refuse_it


def test_kernel_argument_errors():
    p, lengths = make_problem(3, 2, 4, 6, np.random.default_rng(0))
    args = ("lstm", p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], True)
    with pytest.raises(ValueError, match=r"layer_norm: expected shape \(108,\), got \(107,\)"):
        _core.PackedWeights(*args, layer_norm=p["ln"][:-1])
    with pytest.raises(ValueError, match="layer_norm: needs cell 'lstm'"):
        _core.PackedWeights("gru", p["w_ih"][:18], p["w_hh"][:18], None, None, layer_norm=p["ln"])
    with pytest.raises(ValueError, match="weights: layer_norm needs 'float32'"):
        _core.PackedWeights(*args[:5], False, "bfloat16", layer_norm=p["ln"])
    packed = packed_of(p, True)
    cache = _core.TrainCache()
    y, hn, cn = np.empty((3, 2, 6), np.float32), np.empty((2, 6), np.float32), np.empty((2, 6), np.float32)
    _core.layer_forward(packed, p["x"], lengths, False, None, None, y, 0, hn, cn, cache)
    g = lstm_options.zero_grads(p)
    dx, dh0, dc0 = np.empty((3, 2, 4), np.float32), np.empty((2, 6), np.float32), np.empty((2, 6), np.float32)
    with pytest.raises(ValueError, match="grad_layer_norm: required with layer norm"):
        _core.layer_backward(packed, cache, p["x"], p["dy"], 0, None, None, dx, False, dh0, dc0,
                             *(g[k] for k in GRADS))
    plain = _core.PackedWeights(*args)
    with pytest.raises(ValueError, match="the weights differ from the forward's"):
        _core.layer_backward(plain, cache, p["x"], p["dy"], 0, None, None, dx, False, dh0, dc0,
                             *(g[k] for k in GRADS))
