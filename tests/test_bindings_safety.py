"""Regression tests for the bindings' argument handling (issue 11): each of these crashed, refused
valid input or gave pybind's generic error before."""
import os
import pickle
import subprocess
import sys
import threading

import numpy as np
import pytest

import rnnfast
from rnnfast import _core
from helpers import ISAS, randn, using_isa


def run_python(code, timeout=120):
    """Run code in a fresh interpreter (a crash there must not take the test run with it)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)


def test_stream_step_accepts_lists_tuples_memoryviews_without_crashing():
    # The converted array was a temporary whose memory was reused: a segfault or wrong numbers.
    code = """
import numpy as np, rnnfast
for H in (4, 64, 256):
    m = rnnfast.nn.LSTM(H, H).eval()
    x = np.random.default_rng(0).standard_normal((1, H)).astype(np.float32)
    want = m.stream().step(x)
    for kind in (lambda a: a.tolist(), lambda a: tuple(map(tuple, a.tolist())), memoryview,
                 lambda a: a.astype(np.float64), lambda a: a[0].tolist()):
        for _ in range(20):
            got = m.stream().step(kind(x)).reshape(want.shape)
            assert np.allclose(got, want, atol=1e-6), (H, got, want)
print("ok")
"""
    r = run_python(code)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.returncode, r.stderr[-2000:])


@pytest.mark.parametrize("bad, exc, words", [
    (3, TypeError, "x:"), (None, TypeError, "x:"), ("abc", TypeError, "x:"), ([[1, 2], [3]], TypeError, "x:"),
    (np.zeros((1, 4), np.int32), TypeError, "floating-point"), (np.zeros((1, 5), np.float32), ValueError, "shape"),
    (np.zeros((1, 4), np.complex64), TypeError, "floating-point")])
def test_stream_step_bad_input_is_a_clear_error(bad, exc, words):
    s = rnnfast.nn.LSTM(4, 8).eval().stream()
    with pytest.raises(exc, match=words):
        s.step(bad)


def test_stream_step_out_must_not_alias_x():
    s = _core.Stream([_core.PackedWeights("rnn_tanh", np.ones((4, 4), np.float32), np.ones((4, 4), np.float32),
                                          None, None)], 1)
    buf = np.zeros((1, 4), np.float32)
    with pytest.raises(ValueError, match="out: must not share memory with x"):
        s.step(buf, buf)


def test_pickled_arrays_are_accepted():
    # Equal dtypes that are other objects (pickle, MPI, process pools) were refused by identity.
    rng = np.random.default_rng(1)
    m = rnnfast.nn.LSTM(3, 5)
    x = randn(rng, 4, 2, 3)
    want = m(x)[0]
    for p in m.parameters():
        p.data = pickle.loads(pickle.dumps(p.data))
    got = m(pickle.loads(pickle.dumps(x)))[0]
    np.testing.assert_array_equal(got, want)
    m.backward(pickle.loads(pickle.dumps(np.ones_like(got))))


def test_reference_forward_dispatches_float64_by_value():
    rng = np.random.default_rng(2)
    T, B, I, H = 3, 2, 3, 4
    args = [rng.standard_normal(s) for s in [(T, B, I), (H, I), (H, H), (H,), (H,)]]
    args = [pickle.loads(pickle.dumps(a)) for a in args]  # float64 dtypes that are copies
    lengths = np.full(B, T, np.int32)
    y, hn, _ = _core.reference_forward("rnn_tanh", args[0], lengths, False, *args[1:], None, None)
    assert y.dtype == np.float64 and y.shape == (T, B, H)


@pytest.mark.parametrize("n", [2**31, 10**6, 65, 2**64])
def test_set_num_threads_above_the_maximum_raises_naming_it(n):
    before = rnnfast.get_num_threads()
    limit = rnnfast.cpu_info()["max_threads"]
    with pytest.raises(ValueError, match=rf"num_threads: expected an integer in \[1, {limit}\], got {n}"):
        rnnfast.set_num_threads(n)
    assert rnnfast.get_num_threads() == before


@pytest.mark.parametrize("n, exc", [(0, ValueError), (-1, ValueError), (2.0, TypeError), ("2", TypeError),
                                    (None, TypeError), (True, TypeError)])
def test_set_num_threads_bad_values(n, exc):
    with pytest.raises(exc, match="num_threads"):
        rnnfast.set_num_threads(n)


def test_set_num_threads_accepts_numpy_integers():
    before = rnnfast.get_num_threads()
    try:
        rnnfast.set_num_threads(np.int64(1))
        assert rnnfast.get_num_threads() == 1
    finally:
        rnnfast.set_num_threads(before)


@pytest.mark.parametrize("batch, exc", [(2**31, ValueError), (2**70, ValueError), (0, ValueError),
                                        (1.5, TypeError), (None, TypeError)])
def test_stream_batch_size_errors_name_the_argument(batch, exc):
    packed = _core.PackedWeights("gru", np.ones((12, 4), np.float32), np.ones((12, 4), np.float32), None, None)
    with pytest.raises(exc, match="batch_size"):
        _core.Stream([packed], batch)


def packed_lstm(I=3, H=4, with_backward=True):
    rng = np.random.default_rng(3)
    return _core.PackedWeights("lstm", randn(rng, 4 * H, I), randn(rng, 4 * H, H), randn(rng, 4 * H),
                               randn(rng, 4 * H), with_backward)


def forward_args(packed, T=2, B=2, cache=None):
    I, H = packed.input_size, packed.hidden_size
    x = np.ones((T, B, I), np.float32)
    return [packed, x, None, False, None, None, np.zeros((T, B, H), np.float32), 0,
            np.zeros((B, H), np.float32), np.zeros((B, H), np.float32), cache]


@pytest.mark.parametrize("index, value, exc, words", [
    (0, None, TypeError, "packed: expected a PackedWeights"),
    (1, [[[1.0, 2.0, 3.0]]], TypeError, "x: expected a numpy array, got list"),
    (1, np.ones((2, 2, 3)), TypeError, "x: expected a float32 array, got dtype float64"),
    (1, np.ones((2, 2, 6), np.float32)[:, :, ::2], ValueError, "x: expected a C-contiguous"),
    (1, np.ones((2, 3), np.float32), ValueError, "x: expected a 3-D array"),
    (2, [2, 2], TypeError, "lengths: expected a numpy array"),
    (2, np.array([2, 2], np.int64), TypeError, "lengths: expected a int32 array"),
    (2, np.array([3, 1], np.int32), ValueError, "lengths"),
    (3, 1, TypeError, "reverse: expected True or False"),
    (7, 2**63, ValueError, "y_offset"), (7, -1, ValueError, "y_offset"), (7, 0.0, TypeError, "y_offset"),
    (9, None, ValueError, "cn: required"),
    (10, "cache", TypeError, "cache: expected a TrainCache or None"),
])
def test_layer_forward_argument_errors(index, value, exc, words):
    args = forward_args(packed_lstm())
    args[index] = value
    with pytest.raises(exc, match=words):
        _core.layer_forward(*args)


def test_layer_forward_output_may_not_alias_input():
    args = forward_args(packed_lstm(I=4, H=4))
    args[6] = args[1]
    with pytest.raises(ValueError, match="y: must not share memory with x"):
        _core.layer_forward(*args)


def test_backward_with_other_weights_than_the_forward_raises():
    # The cache's buffers are sized for the forward's weights: a larger H read past them.
    cache = _core.TrainCache()
    _core.layer_forward(*forward_args(packed_lstm(H=4), cache=cache))
    big = packed_lstm(H=40)
    T, B, I, H = 2, 2, 3, 40
    z = lambda *s: np.zeros(s, np.float32)  # noqa: E731
    with pytest.raises(ValueError, match="weights differ from the forward"):
        _core.layer_backward(big, cache, z(T, B, I), z(T, B, H), 0, None, None, z(T, B, I), False, z(B, H),
                             z(B, H), z(4 * H, I), z(4 * H, H), None, None)


def test_pair_bindings_check_grads_and_caches():
    p0, p1 = packed_lstm(), packed_lstm()
    T, B, I, H = 2, 2, 3, 4
    z = lambda *s: np.zeros(s, np.float32)  # noqa: E731
    c = _core.TrainCache()
    with pytest.raises(ValueError, match="cache1: must be another TrainCache"):
        _core.layer_forward_pair(p0, p1, z(T, B, I), None, None, None, z(T, B, 2 * H), z(2, B, H), z(2, B, H), c, c)
    c0, c1 = _core.TrainCache(), _core.TrainCache()
    _core.layer_forward_pair(p0, p1, z(T, B, I), None, None, None, z(T, B, 2 * H), z(2, B, H), z(2, B, H), c0, c1)
    grads = (z(4 * H, I), z(4 * H, H), None, None)
    with pytest.raises(TypeError, match="grads1: expected a tuple"):
        _core.layer_backward_pair(p0, p1, c0, c1, z(T, B, I), z(T, B, 2 * H), None, None, z(T, B, I), z(2, B, H),
                                  z(2, B, H), grads, 5)
    with pytest.raises(ValueError, match="grads0: expected 4 arrays"):
        _core.layer_backward_pair(p0, p1, c0, c1, z(T, B, I), z(T, B, 2 * H), None, None, z(T, B, I), z(2, B, H),
                                  z(2, B, H), grads[:2], grads)
    _core.layer_backward_pair(p0, p1, c0, c1, z(T, B, I), z(T, B, 2 * H), None, None, z(T, B, I), z(2, B, H),
                              z(2, B, H), list(grads), grads)


@pytest.mark.parametrize("call, words", [
    (lambda: _core.PackedWeights(1, np.ones((4, 4), np.float32), np.ones((4, 4), np.float32), None, None),
     "cell: expected a str"),
    (lambda: _core.PackedWeights("rnn_tanh", np.ones((4, 4), np.float32), np.ones((4, 4), np.float32), None, None,
                                 None), "with_backward: expected True or False"),
    (lambda: _core.PackedWeights("rnn_tanh", [[1.0]], np.ones((1, 1), np.float32), None, None), "w_ih"),
    (lambda: _core.Stream("x", 1), "layers: expected a list"),
    (lambda: _core.Stream([None], 1), "layers\\[i\\]: expected a PackedWeights"),
    (lambda: _core.gemm([[1.0]], np.ones((1, 1), np.float32), np.ones((1, 1), np.float32)), "a: expected a numpy"),
    (lambda: _core.set_isa(3), "isa: expected a str"),
    (lambda: _core.reference_forward("lstm", [1.0], None, False, None, None, None, None, None, None), "x:"),
])
def test_other_bindings_name_the_argument(call, words):
    with pytest.raises(TypeError, match=words):
        call()


def test_gemm_output_may_not_alias_an_input():
    a = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="c: must not share memory with a"):
        _core.gemm(a, np.ones((4, 4), np.float32), a)


@pytest.mark.parametrize("isa", ISAS)
def test_one_train_cache_in_two_threads_at_once_raises_not_corrupts(isa):
    # Big enough that the two calls overlap: one of them must be refused, never both run.
    packed = packed_lstm(I=64, H=64)
    errors, done = [], []
    cache = _core.TrainCache()

    def run():
        try:
            for _ in range(20):
                _core.layer_forward(*forward_args(packed, T=64, B=8, cache=cache))
            done.append(1)
        except RuntimeError as e:
            errors.append(str(e))

    with using_isa(isa):
        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert all("in use by another thread" in e for e in errors)
    assert len(errors) + len(done) == 2


def test_reference_relu_keeps_nan():
    # Found by the fuzz suite: the scalar reference (the tests' oracle) turned relu(NaN) into 0.
    x = np.array([[[np.nan]]], np.float32)
    one = np.ones((1, 1), np.float32)
    y, hn, _ = _core.reference_forward("rnn_relu", x, np.ones(1, np.int32), False, one, one, None, None, None, None)
    assert np.isnan(y).all() and np.isnan(hn).all()


@pytest.mark.parametrize("threads, seconds, exc, words", [
    (2**31, 0.01, ValueError, "threads: expected an integer in"), (0, 0.01, ValueError, "threads"),
    ("2", 0.01, TypeError, "threads"), (1, float("nan"), ValueError, "seconds"), (1, 0.0, ValueError, "seconds"),
    (1, "0.1", TypeError, "seconds"), (1, None, TypeError, "seconds")])
def test_peak_gflops_arguments(threads, seconds, exc, words):
    with pytest.raises(exc, match=words):
        _core.peak_gflops(threads, seconds)


def test_peak_gflops_accepts_numpy_numbers():
    assert _core.peak_gflops(np.int64(1), np.float64(0.01)) > 0


@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""), reason="AddressSanitizer reserves more "
                    "address space than any cap (this test runs in the default build)")
@pytest.mark.parametrize("cap_mb", [800, 1200, 1500, 2000])
def test_running_out_of_memory_building_a_layer_is_a_python_error(cap_mb):
    # Used to abort ("terminate called ... std::bad_alloc", rc -6) or segfault at most caps.
    code = f"""
import resource
resource.setrlimit(resource.RLIMIT_AS, ({cap_mb} << 20, {cap_mb} << 20))
import rnnfast
rnnfast.nn.LSTM(4, 8, num_layers=10**9)
"""
    r = run_python(code, timeout=300)
    assert r.returncode == 1, (r.returncode, r.stderr[-1000:])
    assert "Error" in r.stderr.strip().splitlines()[-1]
