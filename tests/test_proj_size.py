"""LSTM with projections (proj_size, as torch.nn.LSTM): the kernels against the scalar twin on every
ISA, the twin against finite differences, nn.LSTM against torch, and every other path (rnnfast.torch,
from_torch, streams, export, ONNX) working or refusing clearly."""
import pickle

import numpy as np
import pytest

import rnnfast
from rnnfast import _core, interop, nn
import lstm_options
from helpers import ISAS, randn, using_isa
from lstm_options import assert_pair_equals_separate, packed_of

# (T, B, I, H, P): P off every SIMD width, P == H - 1, P == 1, batch and time 1, a ragged batch of 13.
SHAPES = [(1, 1, 1, 2, 1), (6, 3, 5, 17, 9), (9, 13, 20, 33, 32), (4, 7, 8, 70, 3)]
GRADS = ("w_ih", "w_hh", "b_ih", "b_hh")  # without the option's


def make_problem(T, B, I, H, P, rng, dtype=np.float32):
    return lstm_options.make_problem(T, B, I, H, rng, P=P, dtype=dtype)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T%dB%dI%dH%dP%d" % s)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_optimised_matches_double_reference(isa, shape, reverse):
    """Training forward, backward and inference forward against the float64 twin."""
    rng = np.random.default_rng(sum(shape) + reverse)
    p, lengths = make_problem(*shape, rng)
    with using_isa(isa):
        packed = packed_of(p, False)
        assert packed.proj_size == shape[4] and packed.hidden_size == shape[3]
        lstm_options.assert_matches_double_twin(p, lengths, reverse, 2e-5)


@pytest.mark.parametrize("isa", ISAS)
def test_bitwise_the_same_for_any_thread_count(isa):
    """Only output elements are split between threads: 1, 2 and 3 threads give the same bits."""
    rng = np.random.default_rng(3)
    p, lengths = make_problem(11, 29, 24, 90, 37, rng)
    with using_isa(isa):
        lstm_options.assert_same_bits_for_thread_counts(p, lengths)


@pytest.mark.parametrize("isa", ISAS)
def test_bidirectional_pair_equals_separate_directions(isa):
    rng = np.random.default_rng(8)
    pf, lengths = make_problem(7, 5, 6, 19, 11, rng)
    pb, _ = make_problem(7, 5, 6, 19, 11, rng)
    pb["x"] = pf["x"]
    with using_isa(isa):
        assert_pair_equals_separate(pf, pb, lengths)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_reference_gradients_match_finite_differences(reverse):
    """The twin's backward (float64) against central differences of its forward."""
    p, _ = make_problem(4, 2, 3, 5, 2, np.random.default_rng(12), dtype=np.float64)
    lstm_options.assert_twin_matches_differences(p, np.array([4, 2], np.int32), reverse)


def _torch_lstm(torch, m):
    twin = torch.nn.LSTM(m.input_size, m.hidden_size, m.num_layers, bias=m.bias, batch_first=m.batch_first,
                         bidirectional=m.bidirectional, proj_size=m.proj_size)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    return twin


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("layers,bidirectional,batch_first,bias", [(1, False, False, True), (3, True, True, True),
                                                                   (2, False, True, False)])
def test_lstm_matches_torch(torch, isa, layers, bidirectional, batch_first, bias):
    """nn.LSTM(proj_size) against torch.nn.LSTM(proj_size): names and shapes, outputs, h_n, c_n,
    the input's, the initial states' and every parameter's gradient, with ragged lengths."""
    m = nn.LSTM(6, 21, layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional, proj_size=7, seed=1)
    twin = _torch_lstm(torch, m)
    assert [(n, tuple(t.shape)) for n, t in twin.named_parameters()] == \
        [(n, p.shape) for n, p in m.named_parameters()]
    rng = np.random.default_rng(2)
    T, B, D = 8, 5, 2 if bidirectional else 1
    lengths = np.array([8, 3, 8, 1, 5])
    x = randn(rng, B, T, 6) if batch_first else randn(rng, T, B, 6)
    h0, c0 = randn(rng, layers * D, B, 7), randn(rng, layers * D, B, 21)
    with using_isa(isa):
        y, (hn, cn) = m(x, (h0, c0), lengths=lengths)
        gy, ghn, gcn = randn(rng, *y.shape), randn(rng, *hn.shape), randn(rng, *cn.shape)
        dx = m.backward(gy, (ghn, gcn))
    xt, h0t, c0t = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths), batch_first=batch_first,
                                                     enforce_sorted=False)
    yp, (hnt, cnt) = twin(packed, (h0t, c0t))
    yt, _ = torch.nn.utils.rnn.pad_packed_sequence(yp, batch_first=batch_first, total_length=T)
    ((yt * torch.from_numpy(gy)).sum() + (hnt * torch.from_numpy(ghn)).sum() + (cnt * torch.from_numpy(gcn)).sum()).backward()
    close = dict(rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(y, yt.detach().numpy(), **close)
    np.testing.assert_allclose(hn, hnt.detach().numpy(), **close)
    np.testing.assert_allclose(cn, cnt.detach().numpy(), **close)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **close)
    np.testing.assert_allclose(m.grad_hx[0], h0t.grad.numpy(), **close)
    np.testing.assert_allclose(m.grad_hx[1], c0t.grad.numpy(), **close)
    for (name, p), (_, t) in zip(m.named_parameters(), twin.named_parameters()):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), err_msg=name, **close)


def test_from_torch_and_back(torch):
    torch.manual_seed(0)
    tm = torch.nn.LSTM(4, 9, 2, bidirectional=True, proj_size=3)
    x = torch.randn(5, 2, 4)
    want = tm(x)[0].detach().numpy()
    for m in (interop.from_torch(tm), interop.from_torch(tm.state_dict())):
        assert isinstance(m, nn.LSTM) and m.proj_size == 3 and m.hidden_size == 9 and m.num_layers == 2
        np.testing.assert_allclose(m(x.numpy())[0], want, rtol=1e-5, atol=1e-6)
    copied = pickle.loads(pickle.dumps(interop.from_torch(tm)))
    np.testing.assert_array_equal(copied(x.numpy())[0], interop.from_torch(tm)(x.numpy())[0])
    back = torch.nn.LSTM(4, 9, 2, bidirectional=True, proj_size=3)
    back.load_state_dict(interop.to_torch_state_dict(interop.from_torch(tm)))
    np.testing.assert_array_equal(back(x)[0].detach().numpy(), want)


def test_torch_dropin_with_projection(torch):
    """rnnfast.torch.LSTM(proj_size) against torch.nn.LSTM with the same weights: outputs and
    every gradient through autograd."""
    import rnnfast.torch as rt
    torch.manual_seed(0)
    ref = torch.nn.LSTM(5, 12, 2, bidirectional=True, proj_size=4, batch_first=True)
    ours = rt.LSTM(5, 12, 2, bidirectional=True, proj_size=4, batch_first=True)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 6, 5)
    outs = []
    for m in (ref, ours):
        xi = x.clone().requires_grad_()
        y, (hn, cn) = m(xi)
        (y.square().sum() + hn.sum() + cn.sum()).backward()
        outs.append([y, hn, cn, xi.grad] + [p.grad for p in m.parameters()])
    for a, b in zip(*outs):
        np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), rtol=1e-4, atol=2e-5)
    with torch.no_grad():  # no graph: the kernels' inference path
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor([6, 2, 4]), batch_first=True,
                                                         enforce_sorted=False)
        for got, want in zip(ours(packed)[1], ref(packed)[1]):
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=2e-5)
    assert type(rt.patch(torch.nn.LSTM(5, 12, proj_size=4))) is rt.LSTM


def test_clear_errors():
    with pytest.raises(ValueError, match=r"proj_size: expected 0 <= proj_size < hidden_size \(6\), got 6"):
        nn.LSTM(4, 6, proj_size=6)
    with pytest.raises(ValueError, match="proj_size: only an LSTM has a projection"):
        nn.RNNBase("gru", 4, 6, proj_size=2)


OPTIONS = [({"proj_size": 5}, "proj_size=5"), ({"layer_norm": True}, "layer_norm=True")]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("option", [o for o, _ in OPTIONS], ids=[n for _, n in OPTIONS])
def test_stream_steps_equal_the_whole_sequence(isa, option):
    """A stream (one step at a time) of a 2-layer LSTM with either option: the same bits as the
    eval forward, its state as h_n, c_n, and set_state continuing from given states."""
    m = nn.LSTM(6, 13, 2, seed=0, **option).eval()
    rng = np.random.default_rng(0)
    for _, p in m.named_parameters():  # layer norm's gains and biases off their ones and zeros
        p.data = p.data + randn(rng, *p.shape, scale=0.2)
    x = randn(rng, 7, 3, 6)
    with using_isa(isa):
        y, (hn, cn) = m(x)
        s = m.stream(3)
        np.testing.assert_array_equal(np.stack([s.step(x[t]) for t in range(7)]), y)
        h, c = s.state
        np.testing.assert_array_equal(h, hn)
        np.testing.assert_array_equal(c, cn)
        s.state = (hn, cn)
        y2, _ = m(x, (hn, cn))
        np.testing.assert_array_equal(np.stack([s.step(x[t]) for t in range(7)]), y2)
    with pytest.raises(ValueError, match=r"state\[0\]: expected shape \(2, 3, %d\)" % h.shape[2]):
        s.state = (cn, cn) if option.get("proj_size") else (hn[:, :, :5], cn)
    with pytest.raises(ValueError, match="'bfloat16' is not supported with proj_size > 0 or layer_norm"):
        m.stream(3, weights="bfloat16")


@pytest.mark.parametrize("option,named", OPTIONS)
def test_paths_without_the_option_refuse_it(tmp_path, option, named):
    """proj_size and layer_norm: bfloat16 weights, the rnnfast file (C API) and ONNX refuse them by
    name."""
    m = nn.LSTM(4, 6, **option) if "layer_norm" in option else nn.LSTM(4, 6, proj_size=5)
    with pytest.raises(ValueError, match="'bfloat16' is not supported with proj_size > 0 or layer_norm"):
        m.set_inference_weights("bfloat16")
    with pytest.raises(ValueError, match=f"export: module: an LSTM with {named} cannot be exported"):
        rnnfast.export(m, tmp_path / "m.rnnfast")
    pytest.importorskip("onnx")
    from rnnfast import onnx as rnnfast_onnx
    with pytest.raises(ValueError, match="ONNX's LSTM operator has neither a projection nor layer norm"):
        rnnfast_onnx.export(m, tmp_path / "m.onnx")


def test_kernel_argument_errors():
    rng = np.random.default_rng(0)
    p, lengths = make_problem(3, 2, 4, 6, 2, rng)
    g = lstm_options.zero_grads(p)
    args = ("lstm", p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], True)
    with pytest.raises(ValueError, match=r"w_hh: expected shape \(8, 2\), got \(24, 2\) .a projected LSTM's W_hh"):
        _core.PackedWeights(*args)  # W_hh of a projected LSTM without its W_hr
    with pytest.raises(ValueError, match=r"w_hr: expected proj_size \(rows\) in \[1, hidden_size=6\), got 6"):
        _core.PackedWeights(*args, w_hr=np.zeros((6, 6), np.float32))
    with pytest.raises(ValueError, match="w_hr: a projection needs cell 'lstm'"):
        _core.PackedWeights("gru", p["w_ih"][:18], p["w_hh"][:18], None, None, w_hr=p["w_hr"])
    packed = _core.PackedWeights(*args, w_hr=p["w_hr"])
    cache = _core.TrainCache()
    y, hn, cn = np.empty((3, 2, 2), np.float32), np.empty((2, 2), np.float32), np.empty((2, 6), np.float32)
    _core.layer_forward(packed, p["x"], lengths, False, None, None, y, 0, hn, cn, cache)
    dx, dh0, dc0 = np.empty((3, 2, 4), np.float32), np.empty((2, 2), np.float32), np.empty((2, 6), np.float32)
    with pytest.raises(ValueError, match="grad_w_hr: required with a projection"):
        _core.layer_backward(packed, cache, p["x"], p["dy"], 0, None, None, dx, False, dh0, dc0,
                             *(g[k] for k in GRADS))
    with pytest.raises(ValueError, match=r"hn: expected shape \(2, 2\), got \(2, 6\)"):
        _core.layer_forward(packed, p["x"], lengths, False, None, None, y, 0, cn, cn, None)
