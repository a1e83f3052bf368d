"""RNNCell/LSTMCell/GRUCell against torch's cells, and the streaming step path against whole-sequence forward."""

import numpy as np
import pytest

from rnnfast.nn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from conftest import require_torch
from helpers import ISAS, in_threads, randn, using_isa, using_path

CELLS = [(RNNCell, dict(nonlinearity="tanh")), (RNNCell, dict(nonlinearity="relu")), (LSTMCell, {}), (GRUCell, {})]


def torch_cell(torch, cell):
    cls = {RNNCell: torch.nn.RNNCell, LSTMCell: torch.nn.LSTMCell, GRUCell: torch.nn.GRUCell}[type(cell)]
    kwargs = {"nonlinearity": cell.nonlinearity} if isinstance(cell, RNNCell) else {}
    t = cls(cell.input_size, cell.hidden_size, bias=cell.bias, **kwargs)
    t.load_state_dict({k: torch.from_numpy(v) for k, v in cell.state_dict().items()})
    return t


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("kind, kwargs", CELLS, ids=["rnn_tanh", "rnn_relu", "lstm", "gru"])
@pytest.mark.parametrize("B, I, H", [(1, 1, 1), (3, 17, 130), (5, 8, 33)])
def test_cell_decoder_loop_matches_torch(isa, kind, kwargs, B, I, H):
    """Three steps forward, then backward in reverse order: the BPTT a decoder loop does."""
    torch = require_torch()
    rng = np.random.default_rng(B * 100 + H)
    cell = kind(I, H, seed=B + H, **kwargs)
    t = torch_cell(torch, cell)
    lstm = kind is LSTMCell
    xs = [randn(rng, B, I) for _ in range(3)]
    h0 = (randn(rng, B, H), randn(rng, B, H)) if lstm else randn(rng, B, H)
    gs = [randn(rng, B, H) for _ in range(3)]

    with using_isa(isa):
        state, outs = h0, []
        for x in xs:
            state = cell(x, state)
            outs.append(state[0] if lstm else state)
        # backward, newest step first, carrying the state gradient
        carry_h, carry_c, dxs = None, None, []
        for g in reversed(gs):
            gh = g if carry_h is None else g + carry_h
            dxs.append(cell.backward(gh, carry_c) if lstm else cell.backward(gh))
            carry_h, carry_c = cell.grad_hx if lstm else (cell.grad_hx, None)

    xts = [torch.from_numpy(x).requires_grad_() for x in xs]
    h0t = tuple(torch.from_numpy(h).requires_grad_() for h in h0) if lstm else torch.from_numpy(h0).requires_grad_()
    st, loss = h0t, 0
    for x, g, out in zip(xts, gs, outs):
        st = t(x, st)
        ht = st[0] if lstm else st
        np.testing.assert_allclose(out, ht.detach().numpy(), atol=1e-5)
        loss = loss + (ht * torch.from_numpy(g)).sum()
    loss.backward()
    for dx, x in zip(reversed(dxs), xts):
        np.testing.assert_allclose(dx, x.grad.numpy(), atol=1e-5)
    np.testing.assert_allclose(carry_h, (h0t[0] if lstm else h0t).grad.numpy(), atol=1e-5)
    if lstm:
        np.testing.assert_allclose(carry_c, h0t[1].grad.numpy(), atol=1e-5)
    tp = dict(t.named_parameters())
    for name, p in cell.named_parameters():
        np.testing.assert_allclose(p.grad, tp[name].grad.numpy(), atol=1e-5, err_msg=name)


def test_cell_unbatched_and_errors(torch):
    cell = GRUCell(4, 6)
    t = torch_cell(torch, cell)
    x = randn(np.random.default_rng(0), 4)
    h = cell(x)
    assert h.shape == (6,)
    np.testing.assert_allclose(h, t(torch.from_numpy(x)).detach().numpy(), atol=1e-6)
    assert cell.backward(np.ones(6, np.float32)).shape == (4,)
    with pytest.raises(RuntimeError, match="no pending"):
        cell.backward(np.ones(6, np.float32))
    with pytest.raises(ValueError, match=r"input: expected shape \(B, 4\)"):
        cell(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="hx"):
        cell(np.zeros((2, 4), np.float32), np.zeros((3, 6), np.float32))
    with pytest.raises(TypeError, match="hx"):
        LSTMCell(4, 6)(np.zeros((2, 4), np.float32), np.zeros((2, 6), np.float32))
    cell.eval()
    cell(x)
    with pytest.raises(RuntimeError, match="no pending"):
        cell.backward(np.ones(6, np.float32))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("kind", [LSTM, GRU, RNN])
def test_stream_steps_equal_whole_sequence(isa, kind):
    rng = np.random.default_rng(1)
    m = kind(7, 33, num_layers=3).eval()
    x = randn(rng, 9, 2, 7)
    with using_isa(isa):
        y, state = m(x)
        s = m.stream(batch_size=2)
        steps = np.stack([s.step(x[t]) for t in range(9)])
    np.testing.assert_array_equal(steps, y)
    for got, want in zip(s.state if kind is LSTM else (s.state,), state if kind is LSTM else (state,)):
        np.testing.assert_array_equal(got, want)


def test_stream_state_reset_out_and_unbatched():
    m = LSTM(5, 12, num_layers=2).eval()
    rng = np.random.default_rng(2)
    x = randn(rng, 6, 1, 5)
    h0 = (randn(rng, 2, 1, 12), randn(rng, 2, 1, 12))
    y, _ = m(x, hx=h0)
    s = m.stream()
    s.state = h0
    out = np.empty((1, 12), np.float32)
    for t in range(6):
        assert s.step(x[t], out=out) is out
        np.testing.assert_array_equal(out, y[t])
    s.reset()
    assert not s.state[0].any() and not s.state[1].any()
    y0, _ = m(x[:1])
    np.testing.assert_array_equal(s.step(x[0, 0]), y0[0, 0])  # (I,) input gives (H,)
    with pytest.raises(ValueError, match="x: expected shape"):
        s.step(np.zeros((2, 5), np.float32))
    with pytest.raises(TypeError, match="x: expected a floating-point"):
        s.step(np.zeros((1, 5), np.int32))
    with pytest.raises(ValueError, match="out"):
        s.step(x[0], out=np.empty((1, 11), np.float32))
    with pytest.raises(TypeError, match="state"):
        s.state = np.zeros((2, 1, 12), np.float32)
    with pytest.raises(ValueError, match="state"):
        s.state = (np.zeros((2, 1, 12), np.float32), np.zeros((1, 1, 12), np.float32))
    with pytest.raises(ValueError, match="bidirectional"):
        LSTM(3, 4, bidirectional=True).stream()


@pytest.mark.parametrize("kind", [LSTM, GRU])
def test_stream_state_after_odd_and_even_steps(kind):
    """The state lives in one of two slots that swap every step: reading, writing and resetting it
    after an odd or even number of steps must all act on the live one."""
    m = kind(4, 19, num_layers=2).eval()
    rng = np.random.default_rng(7)
    x = randn(rng, 9, 3, 4)
    y, _ = m(x)
    for split in (1, 4, 5):
        s = m.stream(batch_size=3)
        for t in range(split):
            s.step(x[t])
        saved = s.state
        resumed = m.stream(batch_size=3)
        resumed.state = saved
        for t in range(split, 9):
            np.testing.assert_array_equal(resumed.step(x[t]), y[t])
            np.testing.assert_array_equal(s.step(x[t]), y[t])
        s.reset()
        np.testing.assert_array_equal(s.step(x[0]), y[0])


def test_streams_of_one_model_in_parallel_threads():
    m = GRU(8, 64, num_layers=2).eval()
    rng = np.random.default_rng(3)
    seqs = [randn(rng, 30, 1, 8) for _ in range(6)]
    expected = [m(x)[0] for x in seqs]

    def run(i):
        s = m.stream()
        return np.stack([s.step(seqs[i][t]) for t in range(30)])

    for e, g in zip(expected, in_threads(run, 6)):
        np.testing.assert_array_equal(e, g)


def _round_to_bf16(a):
    """Round-to-nearest-even float32 -> bfloat16 -> float32, as the kernels narrow the weights."""
    bits = np.ascontiguousarray(a, np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
    return bits.astype(np.uint32).view(np.float32)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("kind", [LSTM, GRU, RNN])
def test_bfloat16_stream_equals_float32_on_rounded_weights(isa, kind):
    """The widening bf16 path (dot products off) widens each weight exactly, so it must match
    float32 kernels run on weights rounded to bf16 bit for bit, and differ (slightly) from the
    unrounded model. (The vdpbf16ps path rounds activations too: tests/test_bf16_dot.py.)"""
    rng = np.random.default_rng(4)
    m = kind(7, 33, num_layers=2, seed=3).eval()
    rounded = kind(7, 33, num_layers=2, seed=3).eval()
    rounded.load_state_dict({k: _round_to_bf16(v) if k.startswith("weight") else v
                             for k, v in m.state_dict().items()})
    x = randn(rng, 12, 2, 7)
    with using_path(isa, False):
        s16, s32, s_exact = m.stream(2, weights="bfloat16"), rounded.stream(2), m.stream(2)
        y16 = np.stack([s16.step(x[t]) for t in range(12)])
        y_rounded = np.stack([s32.step(x[t]) for t in range(12)])
        y_exact = np.stack([s_exact.step(x[t]) for t in range(12)])
    np.testing.assert_array_equal(y16, y_rounded)
    assert 0 < np.abs(y16 - y_exact).max() < 2e-2
    assert m.stream(weights="float32").weights == "float32"
    with pytest.raises(ValueError, match="weights: expected one of 'float32', 'bfloat16', 'int8'"):
        m.stream(weights="float16")


@pytest.mark.parametrize("isa", ISAS)
def test_bfloat16_inference_weights_for_whole_sequences(isa):
    rng = np.random.default_rng(5)
    m = GRU(6, 40, num_layers=2, bidirectional=True, seed=1)
    rounded = GRU(6, 40, num_layers=2, bidirectional=True, seed=1).eval()
    rounded.load_state_dict({k: _round_to_bf16(v) if k.startswith("weight") else v
                             for k, v in m.state_dict().items()})
    x = randn(rng, 9, 3, 6)
    lengths = np.array([9, 4, 1])
    with using_path(isa, False):
        y_train, _ = m(x, lengths=lengths)  # training ignores the setting: float32, as before
        m.set_inference_weights("bfloat16").eval()
        y16, h16 = m(x, lengths=lengths)
        y_rounded, h_rounded = rounded(x, lengths=lengths)
        m.set_inference_weights("float32")
        y32, _ = m(x, lengths=lengths)
    np.testing.assert_array_equal(y16, y_rounded)
    np.testing.assert_array_equal(h16, h_rounded)
    np.testing.assert_array_equal(y32, y_train)
    assert 0 < np.abs(y16 - y32).max() < 2e-2
    with pytest.raises(ValueError, match="weights"):
        m.set_inference_weights("float16")
