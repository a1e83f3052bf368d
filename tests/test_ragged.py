"""Ragged batches: a layer sorts its rows by length and computes only the rows still running.
Results match the scalar reference, and a sample's results do not depend on its batch mates:
each one equals the same sample run alone with T = its length, bit for bit (its rows go through
the same kernels in the same order); only the weight gradients, sums over the batch, may differ
in rounding."""
import numpy as np
import pytest

import rnnfast
from rnnfast import _core
from helpers import ISAS, using_isa
from test_kernels import CELLS, assert_matches, make_problem, run_optimised, run_reference

T, B = 9, 17  # B a multiple of no SIMD width
LENGTHS = {
    "shuffled": [3, 9, 1, 7, 9, 2, 5, 8, 4, 6, 9, 1, 3, 7, 2, 8, 5],
    "descending": sorted([3, 9, 1, 7, 9, 2, 5, 8, 4, 6, 9, 1, 3, 7, 2, 8, 5], reverse=True),
    "ascending": sorted([3, 9, 1, 7, 9, 2, 5, 8, 4, 6, 9, 1, 3, 7, 2, 8, 5]),
    "all_equal_short": [4] * B,
    "all_one": [1] * B,
    "one_or_all": [1, 9] * 8 + [1],
}
PER_SAMPLE = ("y", "hn", "cn", "dx", "dh0", "dc0")
GRADS = ("g_w_ih", "g_w_hh", "g_b_ih", "g_b_hh")


def sample(p, b, n):
    """Sample b of a problem on its own, T = n: inputs (T, 1, .), states (1, H)."""
    q = {k: np.ascontiguousarray(p[k][:n, b:b + 1]) for k in ("x", "dy")}
    q.update({k: np.ascontiguousarray(p[k][b:b + 1]) for k in ("h0", "c0", "dhn", "dcn")})
    q.update({k: p[k] for k in ("w_ih", "w_hh", "b_ih", "b_hh")})
    return q


def keys(cell, names):
    return [k for k in names if cell == "lstm" or k not in ("cn", "dc0")]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("pattern", LENGTHS)
def test_each_sample_as_if_alone(isa, cell, reverse, pattern):
    rng = np.random.default_rng(len(pattern) * 10 + len(cell) + reverse)
    p, _ = make_problem(cell, T, B, 11, 20, rng)
    lengths = np.array(LENGTHS[pattern], np.int32)
    with using_isa(isa):
        batch = run_optimised(cell, p, lengths, reverse)
        infer = run_optimised(cell, p, lengths, reverse, train=False)
        alone = [run_optimised(cell, sample(p, b, n), None, reverse) for b, n in enumerate(lengths)]
    assert_matches(batch, run_reference(cell, p, lengths, reverse), cell)
    for k in keys(cell, ("y", "hn", "cn")):
        np.testing.assert_array_equal(infer[k], batch[k], err_msg="inference " + k)
    for b, (n, one) in enumerate(zip(lengths, alone)):
        for k in keys(cell, PER_SAMPLE):
            if k in ("y", "dx"):
                np.testing.assert_array_equal(batch[k][:n, b], one[k][:, 0], err_msg=f"{k}, sample {b}")
                assert not batch[k][n:, b].any(), f"{k}: sample {b} not zero past its length"
            else:
                np.testing.assert_array_equal(batch[k][b], one[k][0], err_msg=f"{k}, sample {b}")
    for k in GRADS:
        total = sum(one[k].astype(np.float64) for one in alone)
        np.testing.assert_allclose(batch[k], total, rtol=1e-5, atol=1e-5 * np.abs(total).max(), err_msg=k)


def with_threads(n, fn):
    saved = rnnfast.get_num_threads()
    rnnfast.set_num_threads(n)
    try:
        return fn()
    finally:
        rnnfast.set_num_threads(saved)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_ragged_results_same_for_any_thread_count(isa, cell, reverse):
    """Large enough for several threads (each step's tiles shrink with the rows still running)."""
    rng = np.random.default_rng(5 + reverse)
    p, lengths = make_problem(cell, 21, 37, 30, 130, rng)
    with using_isa(isa):
        runs = [with_threads(n, lambda: run_optimised(cell, p, lengths, reverse)) for n in (1, 2, 3)]
    for n, run in zip((2, 3), runs[1:]):
        for k in keys(cell, run):
            np.testing.assert_array_equal(run[k], runs[0][k], err_msg=f"{k}, {n} threads")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_stacked_bidirectional_samples_as_if_alone(isa, kind):
    """Three bidirectional layers, each sorting its rows again: outputs, final states and input
    gradients per sample bit for bit those of the sample alone."""
    rng = np.random.default_rng(len(kind))
    Tm, Bm, I, H = 8, 7, 6, 13
    lengths = np.array([5, 8, 1, 3, 8, 2, 6])
    x = rng.standard_normal((Tm, Bm, I)).astype(np.float32)
    g = rng.standard_normal((Tm, Bm, 2 * H)).astype(np.float32)
    with using_isa(isa):
        m = getattr(rnnfast.nn, kind)(I, H, num_layers=3, bidirectional=True, seed=3)
        y, state = m(x, lengths=lengths)
        dx = m.backward(g)
        for b, n in enumerate(lengths):
            y1, state1 = m(np.ascontiguousarray(x[:n, b:b + 1]))
            dx1 = m.backward(np.ascontiguousarray(g[:n, b:b + 1]))
            np.testing.assert_array_equal(y[:n, b], y1[:, 0], err_msg=f"y, sample {b}")
            assert not y[n:, b].any()
            for s, s1 in zip(state if kind == "LSTM" else (state,), state1 if kind == "LSTM" else (state1,)):
                np.testing.assert_array_equal(s[:, b], s1[:, 0], err_msg=f"state, sample {b}")
            np.testing.assert_array_equal(dx[:n, b], dx1[:, 0], err_msg=f"dx, sample {b}")
            assert not dx[n:, b].any()


def test_out_of_range_lengths_still_raise():
    p, _ = make_problem("lstm", 4, 3, 5, 7, np.random.default_rng(0))
    for bad in ([0, 4, 4], [4, 5, 4], [-1, 1, 1]):
        with pytest.raises(ValueError, match="lengths"):
            run_optimised("lstm", p, np.array(bad, np.int32), False)
    assert _core.TrainCache().consumed
