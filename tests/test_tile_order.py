"""Time loops reverse their tiles' order every other step (csrc/core/kernels/phases.h, odd_step), so
a step starts on the weights the step before left in cache. The order changes which thread computes
a tile when, never what a tile computes: every output, state and gradient is bitwise the same as
with the tiles always in index order, on one thread or several, whoever joins when."""
import numpy as np
import pytest

import rnnfast
from rnnfast import _core
from helpers import ISAS, using_isa

# (class, constructor options, inference weights): every per-step phase that reads weights.
MODELS = {
    "lstm": (rnnfast.nn.LSTM, {}, "float32"),
    "gru": (rnnfast.nn.GRU, {}, "float32"),
    "rnn": (rnnfast.nn.RNN, {}, "float32"),
    "gru_reset_before": (rnnfast.nn.GRU, dict(linear_before_reset=False), "float32"),
    "lstm_peepholes": (rnnfast.nn.LSTM, dict(peepholes=True), "float32"),
    "lstm_proj": (rnnfast.nn.LSTM, dict(proj_size=13), "float32"),
    "lstm_layer_norm": (rnnfast.nn.LSTM, dict(layer_norm=True), "float32"),
    "lstm_bidirectional_2_layers": (rnnfast.nn.LSTM, dict(bidirectional=True, num_layers=2), "float32"),
    "gru_2_layers": (rnnfast.nn.GRU, dict(num_layers=2), "float32"),
    "lstm_int8": (rnnfast.nn.LSTM, {}, "int8"),
    "gru_bfloat16": (rnnfast.nn.GRU, {}, "bfloat16"),
}
# (threads forced, join delay us, tile delay us): one thread; two on time; a worker that sleeps
# while it holds tiles, so the caller takes some of its share (in reversed order, too).
SCHEDULES = [(1, 0, 0), (2, 0, 0), (2, 0, 300)]


@pytest.fixture
def tile_order():
    """Sets the order hook and the team's schedule for one test; restores both."""
    saved = rnnfast.get_num_threads()

    def set_order(alternate, schedule):
        threads, join_us, tile_us = schedule
        rnnfast.set_num_threads(threads)
        _core._team_testing(threads, join_us, tile_us)
        _core._alternate_tile_order(alternate)

    yield set_order
    _core._alternate_tile_order(True)
    _core._team_testing(0, 0, 0)
    rnnfast.set_num_threads(saved)


def run_all_paths(name, T, B):
    """Training forward and backward (ragged batch), eval, and stream steps; every result array."""
    cls, options, weights = MODELS[name]
    m = cls(7, 37, seed=5, **options)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((T, B, 7), dtype=np.float32)
    lengths = np.array([T, max(T - 1, 1), 1, T, max(T - 2, 1)][:B])
    out = {}
    m.train()
    y, _ = m(x, lengths=lengths)
    m.zero_grad()
    m.backward(rng.standard_normal(y.shape, dtype=np.float32))
    out["train_y"] = np.array(y)
    out.update({"grad_" + k: np.array(p.grad) for k, p in m.named_parameters()})
    m.eval()
    m.set_inference_weights(weights)
    out["eval_y"] = np.array(m(x)[0])
    if m.direction == "forward":  # a stream runs one step per call: its parity alternates the order
        s = m.stream(batch_size=B)
        out["stream"] = np.stack([np.array(s.step(x[t]), copy=True) for t in range(min(T, 4))])
    return out


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("T", [1, 6, 9])
@pytest.mark.parametrize("B", [1, 5])  # steps reverse only while their rows fit one row block
def test_alternating_tile_order_gives_the_same_bits(isa, name, T, B, tile_order):
    with using_isa(isa):
        tile_order(False, SCHEDULES[0])
        expected = run_all_paths(name, T, B)
        for schedule in SCHEDULES:
            tile_order(True, schedule)
            got = run_all_paths(name, T, B)
            assert got.keys() == expected.keys()
            for k in expected:
                np.testing.assert_array_equal(got[k], expected[k], err_msg=f"{k}, schedule {schedule}")


def test_the_order_hook_takes_only_a_bool():
    with pytest.raises(TypeError, match="on"):
        _core._alternate_tile_order(1)
    assert _core._alternate_tile_order(True) is True
