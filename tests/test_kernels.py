"""The optimised kernels against their scalar twin (csrc/core/reference.cpp) on every ISA path,
and the twin itself against central finite differences in double precision."""
import numpy as np
import pytest

import rnnfast
from rnnfast import _core
from helpers import ISAS, assert_gradients_match_differences, randn, using_isa

CELLS = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
# (T, B, I, H): batch 1, sequence length 1, hidden sizes off every SIMD width, a long-ish run.
SHAPES = [(1, 1, 1, 1), (7, 3, 5, 17), (5, 1, 33, 130), (12, 16, 20, 31), (3, 9, 130, 64)]


def make_problem(cell, T, B, I, H, rng, ragged=True, dtype=np.float32):
    G = CELLS[cell]
    p = dict(x=randn(rng, T, B, I), w_ih=randn(rng, G * H, I, scale=0.4), w_hh=randn(rng, G * H, H, scale=0.4),
             b_ih=randn(rng, G * H, scale=0.2), b_hh=randn(rng, G * H, scale=0.2), h0=randn(rng, B, H),
             c0=randn(rng, B, H), dy=randn(rng, T, B, H), dhn=randn(rng, B, H), dcn=randn(rng, B, H))
    p = {k: v.astype(dtype) for k, v in p.items()}
    lengths = rng.integers(1, T + 1, size=B).astype(np.int32) if ragged else np.full(B, T, np.int32)
    return p, lengths


def run_optimised(cell, p, lengths, reverse, train=True, weights="float32", step=False, **options):
    """Forward (and in training backward) through the kernels; options go to PackedWeights (the
    cell variants: peephole=, linear_before_reset=), and a peephole LSTM also returns g_w_p."""
    T, B, I = p["x"].shape
    H, G = p["w_hh"].shape[1], p["w_hh"].shape[0] // p["w_hh"].shape[1]
    packed = _core.PackedWeights(cell, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], train, weights, step, **options)
    y = np.full((T, B, H), np.nan, np.float32)
    hn, cn = np.empty((B, H), np.float32), np.empty((B, H), np.float32)
    cache = _core.TrainCache() if train else None
    _core.layer_forward(packed, p["x"], lengths, reverse, p["h0"], p["c0"], y, 0, hn, cn, cache)
    out = dict(y=y, hn=hn, cn=cn)
    if train:
        shapes = [("w_ih", (G * H, I)), ("w_hh", (G * H, H)), ("b_ih", (G * H,)), ("b_hh", (G * H,))]
        g = {k: np.zeros(s, np.float32) for k, s in shapes + ([("w_p", (3, H))] if "peephole" in options else [])}
        dx, dh0, dc0 = np.empty((T, B, I), np.float32), np.empty((B, H), np.float32), np.empty((B, H), np.float32)
        _core.layer_backward(packed, cache, p["x"], p["dy"], 0, p["dhn"], p["dcn"], dx, False, dh0, dc0,
                             g["w_ih"], g["w_hh"], g["b_ih"], g["b_hh"], g.get("w_p"))
        out.update(dx=dx, dh0=dh0, dc0=dc0, **{"g_" + k: v for k, v in g.items()})
    return out


def run_reference(cell, p, lengths, reverse, **options):
    """The scalar twin of run_optimised (the same options; g_w_p for a peephole LSTM)."""
    args = (cell, p["x"], lengths, reverse, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], p["h0"], p["c0"])
    y, hn, cn = _core.reference_forward(*args, **options)
    g = _core.reference_backward(*args, p["dy"], p["dhn"], p["dcn"], **options)
    grads = ("w_ih", "w_hh", "b_ih", "b_hh") + (("w_p",) if "peephole" in options else ())
    return dict(y=y, hn=hn, cn=cn, dx=g["dx"], dh0=g["dh0"], dc0=g["dc0"], **{"g_" + k: g[k] for k in grads})


def assert_matches(ours, ref, cell, atol=2e-5, rtol=2e-5):
    for k, r in ref.items():
        if k in ("cn", "dc0") and cell != "lstm":
            continue
        err = np.abs(ours[k] - r).max()
        assert err <= atol + rtol * np.abs(r).max(), f"{k}: max abs error {err:.3g}"


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T%dB%dI%dH%d" % s)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_optimised_matches_reference(isa, cell, shape, reverse):
    rng = np.random.default_rng(sum(shape) * 7 + len(cell) + reverse)
    p, lengths = make_problem(cell, *shape, rng)
    with using_isa(isa):
        ours = run_optimised(cell, p, lengths, reverse)
    assert_matches(ours, run_reference(cell, p, lengths, reverse), cell)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_inference_path_equals_training_path(isa, cell, reverse):
    """Eval projects the input a chunk of steps at a time; results must not change, bit for bit."""
    rng = np.random.default_rng(3)
    p, lengths = make_problem(cell, 23, 64, 40, 256, rng)  # several chunks, the last one partial
    with using_isa(isa):
        train = run_optimised(cell, p, lengths, reverse, train=True)
        infer = run_optimised(cell, p, lengths, reverse, train=False)
    for k in ("y", "hn", "cn") if cell == "lstm" else ("y", "hn"):
        np.testing.assert_array_equal(infer[k], train[k], err_msg=k)


def one_step(cell, p, step, weights="float32"):
    B, H = p["h0"].shape
    packed = _core.PackedWeights(cell, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], False, weights, step)
    assert packed.step == step
    y = np.full((1, B, H), np.nan, np.float32)
    hn, cn = np.empty((B, H), np.float32), np.empty((B, H), np.float32)
    _core.layer_forward(packed, p["x"], None, False, p["h0"], p["c0"], y, 0, hn, cn, None)
    return dict(y=y, hn=hn, cn=cn)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("B, I, H", [(1, 1, 1), (1, 256, 256), (9, 7, 33), (2, 300, 17), (13, 20, 130)])
def test_one_step_with_step_weights(isa, cell, B, I, H):
    """Step-packed weights (streams, cells) project each block's input inside its recurrent tile:
    the same result as the reference, and bit for bit the phased path's while I fits one K-block
    of the GEMM (beyond it the GEMM adds its K-blocks' sums in another order)."""
    rng = np.random.default_rng(B * 1000 + I * 10 + H)
    p, _ = make_problem(cell, 1, B, I, H, rng)
    with using_isa(isa):
        fused, phased = one_step(cell, p, True), one_step(cell, p, False)
        fused16, phased16 = one_step(cell, p, True, "bfloat16"), one_step(cell, p, False, "bfloat16")
    ref = run_reference(cell, p, np.ones(B, np.int32), False)
    assert_matches(fused, {k: ref[k] for k in ("y", "hn", "cn")}, cell)
    for k in ("y", "hn", "cn") if cell == "lstm" else ("y", "hn"):
        if I <= 256:
            np.testing.assert_array_equal(fused[k], phased[k], err_msg=k)
            np.testing.assert_array_equal(fused16[k], phased16[k], err_msg=k)
        else:
            np.testing.assert_allclose(fused16[k], phased16[k], rtol=1e-5, atol=1e-6, err_msg=k)


def run_pair(cell, pf, pb, lengths, threads):
    """Both directions through layer_forward_pair / layer_backward_pair with `threads` threads."""
    T, B, I = pf["x"].shape
    H, G = pf["w_hh"].shape[1], CELLS[cell]
    packed = [_core.PackedWeights(cell, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], True) for p in (pf, pb)]
    caches = [_core.TrainCache(), _core.TrainCache()]
    y = np.full((T, B, 2 * H), np.nan, np.float32)
    hn, cn = np.empty((2, B, H), np.float32), np.empty((2, B, H), np.float32)
    stack = lambda k: np.ascontiguousarray(np.stack([pf[k], pb[k]]))  # noqa: E731
    grads = [tuple(np.zeros(s, np.float32) for s in [(G * H, I), (G * H, H), (G * H,), (G * H,)]) for _ in "fb"]
    dx, dh0, dc0 = np.empty((T, B, I), np.float32), np.empty((2, B, H), np.float32), np.empty((2, B, H), np.float32)
    saved = rnnfast.get_num_threads()
    rnnfast.set_num_threads(threads)
    try:
        _core.layer_forward_pair(*packed, pf["x"], lengths, stack("h0"), stack("c0"), y, hn, cn, *caches)
        dy = np.ascontiguousarray(np.concatenate([pf["dy"], pb["dy"]], axis=2))
        _core.layer_backward_pair(*packed, *caches, pf["x"], dy, stack("dhn"), stack("dcn"), dx, dh0, dc0, *grads)
    finally:
        rnnfast.set_num_threads(saved)
    out = []
    for d in range(2):
        o = dict(y=y[:, :, d * H:(d + 1) * H], hn=hn[d], cn=cn[d], dh0=dh0[d], dc0=dc0[d])
        o.update({"g_" + k: g for k, g in zip(("w_ih", "w_hh", "b_ih", "b_hh"), grads[d])})
        out.append(o)
    return out, dx


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (7, 3, 5, 17), (9, 13, 20, 130)], ids=lambda s: "T%dB%dI%dH%d" % s)
def test_bidirectional_pair_equals_separate_directions(isa, cell, shape):
    """Both directions at once, on 1, 2 or 3 threads: each direction's outputs, states and
    gradients bit for bit those of its own layer_forward/layer_backward; dx their sum."""
    rng = np.random.default_rng(sum(shape) + len(cell))
    pf, lengths = make_problem(cell, *shape, rng)
    pb, _ = make_problem(cell, *shape, rng)
    pb["x"] = pf["x"]
    with using_isa(isa):
        separate = [run_optimised(cell, pf, lengths, False), run_optimised(cell, pb, lengths, True)]
        for threads in (1, 2, 3):
            pair, dx = run_pair(cell, pf, pb, lengths, threads)
            for d in range(2):
                for k, v in pair[d].items():
                    if k in ("cn", "dc0") and cell != "lstm":
                        continue
                    np.testing.assert_array_equal(v, separate[d][k], err_msg=f"direction {d}, {k}, {threads} threads")
            np.testing.assert_allclose(dx, separate[0]["dx"] + separate[1]["dx"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_reference_gradients_match_finite_differences(cell, reverse):
    """The twin's backward (float64) against central differences of its forward."""
    rng = np.random.default_rng(11)
    T, B, I, H = 4, 2, 3, 5
    p, lengths = make_problem(cell, T, B, I, H, rng, dtype=np.float64)
    lengths = np.array([4, 2], np.int32)

    def loss(q):
        y, hn, cn = _core.reference_forward(cell, q["x"], lengths, reverse, q["w_ih"], q["w_hh"], q["b_ih"],
                                            q["b_hh"], q["h0"], q["c0"])
        total = (y * q["dy"]).sum() + (hn * q["dhn"]).sum()
        return total + ((cn * q["dcn"]).sum() if cell == "lstm" else 0.0)

    g = _core.reference_backward(cell, p["x"], lengths, reverse, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"],
                                 p["h0"], p["c0"], p["dy"], p["dhn"], p["dcn"] if cell == "lstm" else None)
    wrt = {"x": "dx", "h0": "dh0", "w_ih": "w_ih", "w_hh": "w_hh", "b_ih": "b_ih", "b_hh": "b_hh"}
    if cell == "lstm":
        wrt["c0"] = "dc0"
    assert_gradients_match_differences(loss, p, g, wrt)


@pytest.mark.parametrize("cell", CELLS)
def test_optimised_matches_double_reference(cell):
    """The float32 kernels against the float64 twin (so float32 rounding in the twin hides nothing)."""
    rng = np.random.default_rng(5)
    p, lengths = make_problem(cell, 9, 5, 21, 37, rng)
    ref = run_reference(cell, {k: v.astype(np.float64) for k, v in p.items()}, lengths, False)
    assert_matches(run_optimised(cell, p, lengths, False), ref, cell, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("isa", ISAS)
# (1100, 70, 300): several row blocks of A (MC is at most 1020 rows) and two K blocks.
@pytest.mark.parametrize("M, N, K", [(1, 1, 1), (7, 65, 3), (13, 17, 300), (130, 257, 513), (6, 64, 256), (1100, 70, 300)])
def test_packed_gemm_matches_numpy(isa, M, N, K):
    rng = np.random.default_rng(M * N + K)
    a, b = randn(rng, M, K), randn(rng, K, N)
    c0 = randn(rng, M, N)
    expected = a.astype(np.float64) @ b.astype(np.float64)
    with using_isa(isa):
        c = c0.copy()
        _core.gemm(a, b, c)
        np.testing.assert_allclose(c, expected, rtol=1e-5, atol=2e-5 * np.sqrt(K))
        _core.gemm(a, b, c, accumulate=True)
        np.testing.assert_allclose(c, 2 * expected, rtol=1e-5, atol=4e-5 * np.sqrt(K))
        ct = np.empty((M, N), np.float32)
        _core.gemm(a, np.ascontiguousarray(b.T), ct, b_transposed=True)
        np.testing.assert_allclose(ct, expected, rtol=1e-5, atol=2e-5 * np.sqrt(K))
