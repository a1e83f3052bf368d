"""The cell variants' kernels (peephole LSTM, Cho et al.'s GRU) against their scalar twin on every ISA
path, the twin against central differences in double, and the GRU against an independent numpy
formula (Keras' reset_after=False)."""
import numpy as np
import pytest

import rnnfast
from rnnfast import _core
from helpers import ISAS, assert_gradients_match_differences, randn, using_isa
import test_kernels as kernels
from test_kernels import SHAPES, assert_matches, make_problem

# name -> (cell, options of PackedWeights / the reference)
VARIANTS = {"peephole": "lstm", "reset_before": "gru"}


def variant_problem(variant, shape, rng, **kw):
    cell = VARIANTS[variant]
    p, lengths = make_problem(cell, *shape, rng, **kw)
    H = shape[3]
    if variant == "peephole":
        p["w_p"] = randn(rng, 3, H, scale=0.5).astype(p["x"].dtype)
    return cell, p, lengths


def options(variant, p):
    return dict(peephole=p["w_p"]) if variant == "peephole" else dict(linear_before_reset=False)


def run_optimised(variant, p, lengths, reverse, **kw):
    return kernels.run_optimised(VARIANTS[variant], p, lengths, reverse, **kw, **options(variant, p))


def run_reference(variant, p, lengths, reverse):
    return kernels.run_reference(VARIANTS[variant], p, lengths, reverse, **options(variant, p))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T%dB%dI%dH%d" % s)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_variant_matches_reference(isa, variant, shape, reverse):
    rng = np.random.default_rng(sum(shape) * 5 + len(variant) + reverse)
    cell, p, lengths = variant_problem(variant, shape, rng)
    with using_isa(isa):
        ours = run_optimised(variant, p, lengths, reverse)
    assert_matches(ours, run_reference(variant, p, lengths, reverse), cell)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_variant_inference_equals_training(isa, variant, reverse):
    """Eval (chunked input projection, r⊙h scratch of one step) is bit for bit the training forward."""
    rng = np.random.default_rng(4)
    cell, p, lengths = variant_problem(variant, (23, 64, 40, 256), rng)
    with using_isa(isa):
        train = run_optimised(variant, p, lengths, reverse, train=True)
        infer = run_optimised(variant, p, lengths, reverse, train=False)
    for k in ("y", "hn", "cn") if cell == "lstm" else ("y", "hn"):
        np.testing.assert_array_equal(infer[k], train[k], err_msg=k)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("B, I, H", [(1, 1, 1), (9, 7, 33), (13, 20, 130)])
def test_variant_one_step_with_step_weights(isa, variant, B, I, H):
    """The fused one-step path (streams, cells) and bfloat16 weights also run the variant."""
    rng = np.random.default_rng(B + I + H)
    cell, p, _ = variant_problem(variant, (1, B, I, H), rng, ragged=False)
    with using_isa(isa):
        fused = run_optimised(variant, p, None, False, train=False, step=True)
        phased = run_optimised(variant, p, None, False, train=False, step=False)
        bf16 = run_optimised(variant, p, None, False, train=False, weights="bfloat16", step=True)
    ref = run_reference(variant, p, np.ones(B, np.int32), False)
    assert_matches(fused, {k: ref[k] for k in ("y", "hn", "cn")}, cell)
    assert_matches(bf16, {k: ref[k] for k in ("y", "hn", "cn")}, cell, atol=3e-2, rtol=3e-2)
    for k in ("y", "hn", "cn") if cell == "lstm" else ("y", "hn"):
        np.testing.assert_array_equal(fused[k], phased[k], err_msg=k)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_is_bitwise_the_same_for_any_thread_count(isa, variant):
    rng = np.random.default_rng(8)
    cell, p, lengths = variant_problem(variant, (9, 13, 20, 130), rng)
    saved = rnnfast.get_num_threads()
    outs = []
    try:
        with using_isa(isa):
            for threads in (1, 2, 3):
                rnnfast.set_num_threads(threads)
                outs.append(run_optimised(variant, p, lengths, False))
    finally:
        rnnfast.set_num_threads(saved)
    for o in outs[1:]:
        for k, v in o.items():
            if cell == "lstm" or k not in ("cn", "dc0"):
                np.testing.assert_array_equal(v, outs[0][k], err_msg=k)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_variant_reference_gradients_match_finite_differences(variant, reverse):
    rng = np.random.default_rng(12)
    cell, p, _ = variant_problem(variant, (4, 2, 3, 5), rng, dtype=np.float64)
    lengths = np.array([4, 2], np.int32)
    lstm = cell == "lstm"

    def loss(q):
        y, hn, cn = _core.reference_forward(cell, q["x"], lengths, reverse, q["w_ih"], q["w_hh"], q["b_ih"],
                                            q["b_hh"], q["h0"], q["c0"], **options(variant, q))
        return (y * q["dy"]).sum() + (hn * q["dhn"]).sum() + ((cn * q["dcn"]).sum() if lstm else 0.0)

    g = _core.reference_backward(cell, p["x"], lengths, reverse, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"],
                                 p["h0"], p["c0"], p["dy"], p["dhn"], p["dcn"] if lstm else None,
                                 **options(variant, p))
    wrt = {"x": "dx", "h0": "dh0", "w_ih": "w_ih", "w_hh": "w_hh", "b_ih": "b_ih", "b_hh": "b_hh"}
    if lstm:
        wrt.update(c0="dc0", w_p="w_p")
    assert_gradients_match_differences(loss, p, g, wrt)


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def numpy_gru_reset_before(x, w_ih, w_hh, b_ih, b_hh, h0):
    """Keras' GRU with reset_after=False (Cho et al. 2014), in PyTorch's gate order r, z, n."""
    H = h0.shape[1]
    h, ys = h0, []
    for xt in x:
        xa = xt @ w_ih.T + b_ih
        r = sigmoid(xa[:, :H] + h @ w_hh[:H].T + b_hh[:H])
        z = sigmoid(xa[:, H:2 * H] + h @ w_hh[H:2 * H].T + b_hh[H:2 * H])
        n = np.tanh(xa[:, 2 * H:] + (r * h) @ w_hh[2 * H:].T + b_hh[2 * H:])
        h = (1 - z) * n + z * h
        ys.append(h)
    return np.stack(ys), h


def numpy_lstm_peephole(x, w_ih, w_hh, b_ih, b_hh, w_p, h0, c0):
    """ONNX's LSTM with P (i, f from c_{t-1}, o from c_t), in PyTorch's gate order i, f, g, o."""
    H = h0.shape[1]
    h, c, ys = h0, c0, []
    for xt in x:
        a = xt @ w_ih.T + b_ih + h @ w_hh.T + b_hh
        i = sigmoid(a[:, :H] + w_p[0] * c)
        f = sigmoid(a[:, H:2 * H] + w_p[1] * c)
        c = f * c + i * np.tanh(a[:, 2 * H:3 * H])
        h = sigmoid(a[:, 3 * H:] + w_p[2] * c) * np.tanh(c)
        ys.append(h)
    return np.stack(ys), h, c


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_matches_independent_numpy_formula(isa, variant):
    rng = np.random.default_rng(21)
    _, p, _ = variant_problem(variant, (6, 4, 5, 19), rng, dtype=np.float64)
    q = {k: v.astype(np.float32) for k, v in p.items()}
    with using_isa(isa):
        ours = run_optimised(variant, q, None, False, train=False)
    if variant == "peephole":
        y, hn, cn = numpy_lstm_peephole(p["x"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], p["w_p"], p["h0"], p["c0"])
        np.testing.assert_allclose(ours["cn"], cn, rtol=1e-5, atol=1e-5)
    else:
        y, hn = numpy_gru_reset_before(p["x"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], p["h0"])
    np.testing.assert_allclose(ours["y"], y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours["hn"], hn, rtol=1e-5, atol=1e-5)


def test_variants_differ_from_the_default_cell():
    """The options change the result (a variant silently ignored would pass the tests above only if
    the twin ignored it too)."""
    rng = np.random.default_rng(2)
    for variant in VARIANTS:
        cell, p, lengths = variant_problem(variant, (5, 3, 4, 7), rng)
        args = (cell, p["x"], lengths, False, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], p["h0"], p["c0"])
        assert not np.allclose(_core.reference_forward(*args)[0],
                               _core.reference_forward(*args, **options(variant, p))[0], atol=1e-4)


def test_variant_options_are_checked():
    w = np.zeros((12, 3), np.float32)
    with pytest.raises(ValueError, match="linear_before_reset"):
        _core.PackedWeights("lstm", np.zeros((12, 2), np.float32), w, None, None, linear_before_reset=False)
    with pytest.raises(ValueError, match="peephole"):
        _core.PackedWeights("gru", np.zeros((9, 2), np.float32), np.zeros((9, 3), np.float32), None, None,
                            peephole=np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="peephole: expected shape"):
        _core.PackedWeights("lstm", np.zeros((12, 2), np.float32), w, None, None, peephole=np.zeros((3, 2), np.float32))
    packed = _core.PackedWeights("lstm", np.zeros((12, 2), np.float32), w, None, None, True,
                                 peephole=np.zeros((3, 3), np.float32))
    assert packed.peephole and packed.linear_before_reset
    cache = _core.TrainCache()
    x = np.zeros((2, 1, 2), np.float32)
    _core.layer_forward(packed, x, None, False, None, None, np.empty((2, 1, 3), np.float32), 0,
                        np.empty((1, 3), np.float32), np.empty((1, 3), np.float32), cache)
    g = [np.zeros(s, np.float32) for s in [(12, 2), (12, 3)]]
    with pytest.raises(ValueError, match="grad_w_p"):
        _core.layer_backward(packed, cache, x, np.zeros((2, 1, 3), np.float32), 0, None, None,
                             np.empty((2, 1, 2), np.float32), False, np.empty((1, 3), np.float32),
                             np.empty((1, 3), np.float32), *g, None, None)
