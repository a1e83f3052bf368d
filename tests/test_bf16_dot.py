"""bfloat16 inference weights on vdpbf16ps (the avx512 dot-product twin, where the CPU has
AVX512_BF16) against a numpy model that rounds weights and activations the same way, and the
widening fallback's accuracy on every ISA."""
import numpy as np
import pytest

from rnnfast import _core
from rnnfast.nn import GRU, LSTM, RNN
from helpers import BF16_PATHS, randn, using_path
from quantized_reference import bf16_dot_forward

CELLS = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
DOT = [p for p in BF16_PATHS if p[1]]
SHAPES = [(1, 1, 1, 1), (7, 3, 5, 17), (5, 1, 33, 130), (12, 16, 20, 31), (3, 9, 130, 64)]


def problem(cell, T, B, I, H, rng):
    G = CELLS[cell]
    return dict(x=randn(rng, T, B, I), w_ih=randn(rng, G * H, I, scale=0.4), w_hh=randn(rng, G * H, H, scale=0.4),
                b_ih=randn(rng, G * H, scale=0.2), b_hh=randn(rng, G * H, scale=0.2), h0=randn(rng, B, H),
                c0=randn(rng, B, H))


@pytest.mark.skipif(not DOT, reason="this CPU has no AVX512_BF16")
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T%dB%dI%dH%d" % s)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_dot_path_matches_rounding_reference(cell, shape, reverse):
    rng = np.random.default_rng(sum(shape) * 3 + len(cell) + reverse)
    p = problem(cell, *shape, rng)
    T, B, _, H = shape
    lengths = rng.integers(1, T + 1, size=B).astype(np.int32)
    with using_path("avx512", True):
        packed = _core.PackedWeights(cell, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], False, "bfloat16")
        y = np.full((T, B, H), np.nan, np.float32)
        hn, cn = np.empty((B, H), np.float32), np.empty((B, H), np.float32)
        _core.layer_forward(packed, p["x"], lengths, reverse, p["h0"], p["c0"], y, 0, hn, cn, None)
    assert packed.kernel == "avx512 bfloat16 dpbf16"
    ry, rh, rc = bf16_dot_forward(cell, p["x"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], p["h0"], p["c0"],
                                  lengths, reverse, forced=y)
    # Teacher-forced on the kernel's h: float32 sums against float64 ones only.
    for ours, ref in ((y, ry), (hn, rh)) + (((cn, rc),) if cell == "lstm" else ()):
        np.testing.assert_allclose(ours, ref, atol=2e-5 * (1 + np.abs(ref).max()), rtol=0)
    free, _, _ = bf16_dot_forward(cell, p["x"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], p["h0"], p["c0"],
                                  lengths, reverse)
    np.testing.assert_allclose(y, free, atol=5e-3 * (1 + np.abs(free).max()), rtol=0)  # free running: within a few roundings


@pytest.mark.skipif(not DOT, reason="this CPU has no AVX512_BF16")
@pytest.mark.parametrize("kind", [LSTM, GRU, RNN])
def test_dot_stream_equals_whole_sequence(kind):
    rng = np.random.default_rng(6)
    m = kind(20, 70, num_layers=2, seed=4).set_inference_weights("bfloat16").eval()
    x = randn(rng, 11, 3, 20)
    with using_path("avx512", True):
        s = m.stream(3)
        ys = np.stack([s.step(x[t]) for t in range(11)])
        y, _ = m(x)
    np.testing.assert_array_equal(ys, y)


@pytest.mark.parametrize("isa, dot", BF16_PATHS, ids=[f"{i}-{'dot' if d else 'widening'}" for i, d in BF16_PATHS])
@pytest.mark.parametrize("kind", [LSTM, GRU, RNN])
def test_error_against_float32_on_random_models(isa, dot, kind):
    """The issue's bound: max |y - y_fp32| / max |y_fp32| <= 1e-2 (PyTorch's initialisation)."""
    rng = np.random.default_rng(8)
    m = kind(128, 256, num_layers=2, seed=5).eval()
    x = randn(rng, 50, 8, 128)
    with using_path(isa, dot):
        y32, _ = m(x)
        y16, _ = m.set_inference_weights("bfloat16")(x)
    err = np.abs(y16 - y32).max() / np.abs(y32).max()
    assert 1e-5 < err <= 1e-2, err
