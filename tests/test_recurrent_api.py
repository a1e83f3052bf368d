"""The Python API of RNN/LSTM/GRU: PyTorch conventions, modes, determinism, threads, bad input."""

import numpy as np
import pytest

import rnnfast
from rnnfast.nn import GRU, LSTM, RNN
from helpers import in_threads, randn

KINDS = [LSTM, GRU, RNN]


@pytest.mark.parametrize("kind", KINDS)
def test_parameter_names_shapes_and_init(kind):
    m = kind(10, 20, num_layers=2, bidirectional=True, seed=0)
    g = {LSTM: 4, GRU: 3, RNN: 1}[kind]
    names = dict(m.named_parameters())
    assert names["weight_ih_l0"].shape == (g * 20, 10)
    assert names["weight_ih_l1_reverse"].shape == (g * 20, 40)
    assert names["weight_hh_l1"].shape == (g * 20, 20)
    assert names["bias_hh_l0_reverse"].shape == (g * 20,)
    assert len(names) == 16
    bound = 1 / np.sqrt(20)
    for p in m.parameters():
        assert p.data.dtype == np.float32 and np.abs(p.data).max() <= bound
        assert np.abs(p.data).max() > 0.8 * bound  # the whole range, not a narrower one (seeded: not flaky)
    assert len(kind(3, 4, bias=False).parameters()) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_torch_state_dict_loads_and_gives_torch_outputs(kind, torch):
    tcls = {LSTM: torch.nn.LSTM, GRU: torch.nn.GRU, RNN: torch.nn.RNN}[kind]
    t = tcls(6, 9, num_layers=2, batch_first=True)
    m = kind(6, 9, num_layers=2, batch_first=True)
    m.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    x = randn(np.random.default_rng(0), 2, 5, 6)
    y, _ = m(x)
    np.testing.assert_allclose(y, t(torch.from_numpy(x))[0].detach().numpy(), atol=1e-6)


def test_weights_changed_in_eval_are_seen():
    m = LSTM(4, 8).eval()
    x = randn(np.random.default_rng(1), 3, 2, 4)
    y1, _ = m(x)
    p = m.weight_hh_l0
    p.data = p.data * 0.5  # assignment bumps the version: repacked
    y2, _ = m(x)
    assert not np.array_equal(y1, y2)
    p.data[:] = 0.0
    p.mark_changed()
    y3, _ = m(x)
    m2 = LSTM(4, 8).eval()
    m2.load_state_dict(m.state_dict())
    np.testing.assert_array_equal(y3, m2(x)[0])


@pytest.mark.parametrize("kind", KINDS)
def test_eval_mode_keeps_nothing_and_backward_raises(kind):
    m = kind(4, 5).eval()
    y, _ = m(randn(np.random.default_rng(2), 3, 2, 4))
    with pytest.raises(RuntimeError, match="eval mode"):
        m.backward(np.ones_like(y))


def test_backward_before_forward_and_twice():
    m = GRU(4, 5)
    with pytest.raises(RuntimeError, match="backward"):
        m.backward(np.zeros((3, 2, 5), np.float32))
    y, _ = m(randn(np.random.default_rng(3), 3, 2, 4))
    m.backward(np.ones_like(y))
    with pytest.raises(RuntimeError, match="once per forward"):
        m.backward(np.ones_like(y))


def test_backward_accumulates_gradients():
    m = LSTM(3, 4)
    x = randn(np.random.default_rng(4), 5, 2, 3)
    y, _ = m(x)
    m.backward(np.ones_like(y))
    first = {n: p.grad.copy() for n, p in m.named_parameters()}
    y, _ = m(x)
    m.backward(np.ones_like(y))
    for n, p in m.named_parameters():
        np.testing.assert_allclose(p.grad, 2 * first[n], rtol=1e-6, atol=1e-7)
    m.zero_grad()
    assert all(not p.grad.any() for p in m.parameters())


def test_unbatched_input_like_torch(torch):
    m = GRU(3, 4, num_layers=2)
    t = torch.nn.GRU(3, 4, num_layers=2)
    t.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    x = randn(np.random.default_rng(5), 6, 3)
    y, h = m(x)
    yt, ht = t(torch.from_numpy(x))
    assert y.shape == (6, 4) and h.shape == (2, 4)
    np.testing.assert_allclose(y, yt.detach().numpy(), atol=1e-6)
    assert m.backward(np.ones_like(y)).shape == x.shape


def test_float64_and_noncontiguous_input_are_converted():
    m = RNN(4, 6, batch_first=True)
    x64 = np.random.default_rng(6).standard_normal((2, 7, 8))[:, :, ::2]  # float64, strided
    y, _ = m(x64)
    y32, _ = m(np.ascontiguousarray(x64, dtype=np.float32))
    np.testing.assert_array_equal(y, y32)


def test_nan_in_gives_nan_out():
    m = LSTM(3, 4)
    x = randn(np.random.default_rng(7), 5, 2, 3)
    x[2, 0, 1] = np.nan
    y, (h, c) = m(x)
    assert np.isnan(y[2:, 0]).all() and not np.isnan(y[:2]).any() and not np.isnan(y[:, 1]).any()
    assert np.isnan(h[0, 0]).all() and np.isnan(c[0, 0]).all()


@pytest.mark.parametrize("kind", KINDS)
def test_bitwise_identical_for_any_thread_count(kind):
    rng = np.random.default_rng(8)
    m = kind(32, 130, num_layers=2, bidirectional=True)
    x = randn(rng, 9, 16, 32)
    g = None
    results = []
    before = rnnfast.get_num_threads()
    try:
        for n in (1, 2, 3, 2):
            rnnfast.set_num_threads(n)
            m.zero_grad()
            y, _ = m(x, lengths=np.array([9, 3, 1, 9] * 4))
            g = np.ones_like(y) if g is None else g
            dx = m.backward(g)
            results.append([y, dx] + [p.grad.copy() for p in m.parameters()])
    finally:
        rnnfast.set_num_threads(before)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_concurrent_eval_calls_from_threads():
    m = LSTM(16, 64, num_layers=2).eval()
    rng = np.random.default_rng(9)
    inputs = [randn(rng, 20, 4, 16) for _ in range(8)]
    expected = [m(x)[0] for x in inputs]

    def work(i):
        return [m(inputs[i])[0] for _ in range(3)]

    for e, runs in zip(expected, in_threads(work, len(inputs))):
        for g in runs:
            np.testing.assert_array_equal(e, g)


def test_dropout_between_layers_is_seeded_and_train_only():
    x = randn(np.random.default_rng(10), 6, 3, 5)
    a, b = LSTM(5, 8, num_layers=2, dropout=0.5, seed=1), LSTM(5, 8, num_layers=2, dropout=0.5, seed=1)
    np.testing.assert_array_equal(a(x)[0], b(x)[0])
    a.seed_dropout(123)
    b.seed_dropout(123)
    ya = a(x)[0]
    np.testing.assert_array_equal(ya, b(x)[0])
    assert not np.array_equal(ya, a(x)[0])  # a fresh mask each call
    a.eval()
    np.testing.assert_array_equal(a(x)[0], a(x)[0])
    nodrop = LSTM(5, 8, num_layers=2, seed=1).eval()
    np.testing.assert_array_equal(a(x)[0], nodrop(x)[0])


def test_dropout_gradient_matches_finite_differences():
    m = GRU(3, 4, num_layers=2, dropout=0.3, seed=0)
    x = randn(np.random.default_rng(11), 4, 2, 3).astype(np.float64)
    m.seed_dropout(7)
    y, _ = m(x)
    dx = m.backward(np.ones_like(y))
    eps = 1e-2
    for idx in [(0, 0, 0), (3, 1, 2), (1, 0, 1)]:
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        m.seed_dropout(7)
        up = m(xp)[0].sum()
        m.seed_dropout(7)
        down = m(xm)[0].sum()
        assert abs((up - down) / (2 * eps) - dx[idx]) < 2e-3


# ---- bad input -------------------------------------------------------------------------
@pytest.mark.parametrize("bad, exc, words", [
    (lambda m: m(np.zeros((3, 2, 5, 1), np.float32)), ValueError, ["x", "3-D"]),
    (lambda m: m(np.zeros((3, 2, 5), np.float32)), ValueError, ["x", "4 input features", "got 5"]),
    (lambda m: m(np.zeros((3, 2, 4), np.int64)), TypeError, ["x", "floating", "int64"]),
    (lambda m: m(np.zeros((0, 2, 4), np.float32)), ValueError, ["x", "non-empty"]),
    (lambda m: m(np.zeros((3, 0, 4), np.float32)), ValueError, ["x", "non-empty"]),
    (lambda m: m(np.zeros((3, 2, 4), np.float32), lengths=[3, 0]), ValueError, ["lengths", "[1, 3]", "0"]),
    (lambda m: m(np.zeros((3, 2, 4), np.float32), lengths=[3, 4]), ValueError, ["lengths", "[1, 3]", "4"]),
    (lambda m: m(np.zeros((3, 2, 4), np.float32), lengths=[3]), ValueError, ["lengths", "(2,)", "(1,)"]),
    (lambda m: m(np.zeros((3, 2, 4), np.float32), lengths=[3.0, 2.0]), TypeError, ["lengths", "integer"]),
    (lambda m: m(np.zeros((3, 2, 4), np.float32), hx=np.zeros((1, 2, 6), np.float32)), TypeError, ["hx", "tuple"]),
    (lambda m: m(np.zeros((3, 2, 4), np.float32), hx=(np.zeros((1, 2, 6), np.float32),) * 2), ValueError,
     ["hx[0]", "(2, 2, 6)", "(1, 2, 6)"]),
    (lambda m: m(np.zeros((3, 2, 4), np.float32), hx=(np.zeros((2, 2, 6), np.float32), np.zeros((2, 3, 6)))),
     ValueError, ["hx[1]", "(2, 2, 6)", "(2, 3, 6)"]),
    (lambda m: m("hello"), TypeError, ["x", "floating"]),
])
def test_bad_input_raises_clear_errors(bad, exc, words):
    m = LSTM(4, 6, num_layers=2)
    with pytest.raises(exc) as info:
        bad(m)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_bad_grad_output_keeps_forward_usable():
    m = LSTM(4, 6)
    y, _ = m(np.zeros((3, 2, 4), np.float32))
    with pytest.raises(ValueError, match=r"grad_output.*\(3, 2, 6\).*\(3, 2, 5\)"):
        m.backward(np.zeros((3, 2, 5), np.float32))
    with pytest.raises(TypeError, match="grad_state"):
        m.backward(np.zeros_like(y), grad_state=np.zeros((1, 2, 6), np.float32))
    m.backward(np.zeros_like(y))  # the forward's activations were not consumed by the failures


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(input_size=0, hidden_size=3), ValueError, ["input_size", ">= 1", "0"]),
    (dict(input_size=2, hidden_size=-1), ValueError, ["hidden_size", ">= 1"]),
    (dict(input_size=2, hidden_size=3, num_layers=1.5), TypeError, ["num_layers", "float"]),  # as torch
    (dict(input_size=2, hidden_size=3, dropout=1.5), ValueError, ["dropout", "[0, 1]", "1.5"]),
    (dict(input_size=2, hidden_size=3, nonlinearity="sigmoid"), ValueError, ["nonlinearity", "'tanh' or 'relu'"]),
])
def test_bad_constructor_arguments(kwargs, error, words):
    with pytest.raises(error) as info:
        RNN(**kwargs)
    for w in words:
        assert w in str(info.value)


def test_core_rejects_wrong_arrays_without_crashing():
    from rnnfast import _core
    w = np.zeros((8, 3), np.float32)
    with pytest.raises(ValueError, match=r"w_ih: expected shape \(12, 3\), got \(8, 3\)"):
        _core.PackedWeights("lstm", w, np.zeros((8, 3), np.float32), None, None, False)
    p = _core.PackedWeights("gru", np.zeros((6, 3), np.float32), np.zeros((6, 2), np.float32), None, None, False)
    y, hn = np.zeros((4, 1, 2), np.float32), np.zeros((1, 2), np.float32)
    with pytest.raises(TypeError, match="x"):
        _core.layer_forward(p, np.zeros((4, 1, 3)), None, False, None, None, y, 0, hn, None, None)
    with pytest.raises(ValueError, match="y_offset"):
        _core.layer_forward(p, np.zeros((4, 1, 3), np.float32), None, False, None, None, y, 1, hn, None, None)
    with pytest.raises(ValueError, match="lengths"):
        _core.layer_forward(p, np.zeros((4, 1, 3), np.float32), np.array([5], np.int32), False, None, None, y, 0,
                            hn, None, None)
    with pytest.raises(ValueError, match="cell"):
        _core.PackedWeights("tanh", w, w, None, None, False)
    with pytest.raises(ValueError, match="isa"):
        rnnfast.set_isa("sse9")


def test_cpu_info_and_threads():
    info = rnnfast.cpu_info()
    assert info["isa"] in info["isas_available"] and "generic" in info["isas_available"]
    before = rnnfast.get_num_threads()
    rnnfast.set_num_threads(1)
    assert rnnfast.get_num_threads() == 1 and rnnfast.cpu_info()["num_threads"] == 1
    rnnfast.set_num_threads(before)
    with pytest.raises(ValueError, match="num_threads"):
        rnnfast.set_num_threads(0)


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_rnnfast_isa_environment_variable(isa):
    import subprocess
    import sys
    code = "import warnings, rnnfast; warnings.simplefilter('error'); print(rnnfast.cpu_info()['isa'])"
    env = dict(__import__("os").environ, RNNFAST_ISA=isa)
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if isa in rnnfast.cpu_info()["isas_available"]:
        assert run.returncode == 0 and run.stdout.strip() == isa, run.stderr
    else:
        assert run.returncode != 0 and "RNNFAST_ISA" in run.stderr


def test_unknown_isa_request_warns():
    import subprocess
    import sys
    env = dict(__import__("os").environ, RNNFAST_ISA="sse9")
    run = subprocess.run([sys.executable, "-c", "import rnnfast"], env=env, capture_output=True, text=True)
    assert run.returncode == 0 and "RNNFAST_ISA='sse9' ignored" in run.stderr
