"""The fuzz suite's rules (tests/test_fuzz.py): every case either raises a clear error or returns the
right numbers.

A clear error is a TypeError or ValueError whose message names one of the arguments the case
varied. Anything else fails the case: another exception type, a message that names no argument,
or a result that differs from the oracle (a scalar reference or numpy) -- "silently wrong".

With RNNFAST_FUZZ_RECORD=<file> each case appends "start", then its outcome, to that file, so
scripts/fuzz_report.py can count cases and tell a crash (a start with no outcome) from the rest.
"""
from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

CLEAR_ERRORS = (TypeError, ValueError, KeyError)  # KeyError: a mapping's keys (state dicts)
FUZZ = settings(max_examples=int(os.environ.get("RNNFAST_FUZZ_EXAMPLES", "15")), derandomize=True, deadline=None,
                database=None, suppress_health_check=list(HealthCheck))


def _record(line: str) -> None:
    path = os.environ.get("RNNFAST_FUZZ_RECORD")
    if path:
        with open(path, "a", encoding="utf-8") as f:  # closed at once: survives a crash of this process
            f.write(line + "\n")


REJECT = "reject"  # an oracle's answer: this input is invalid, accepting it is silently wrong
ANY = "any"  # an oracle's answer: either outcome is fine (no numbers to compare)


def outcome(label: str, call, names, expected=None, rtol=1e-4, atol=1e-5):
    """Run ``call()``. A clear error naming one of ``names`` passes unless ``expected()`` says the
    input was valid; a result passes if ``expected()`` gives equal arrays (NaN equals NaN) or ANY,
    and fails if it gives REJECT. Returns the result (None after an error)."""
    _record(f"start\t{label}")
    want = expected() if expected is not None else ANY
    try:
        got = call()
    except CLEAR_ERRORS as e:
        msg = str(e)
        if not any(n in msg for n in names):
            _record(f"unclear\t{label}\t{type(e).__name__}: {msg[:200]}")
            raise AssertionError(f"{label}: {type(e).__name__} names none of {names}: {msg}") from e
        _record(f"error\t{label}")
        return None
    except MemoryError:  # a valid request larger than memory: clear enough, whatever the message
        _record(f"error\t{label}")
        return None
    except Exception as e:
        _record(f"unclear\t{label}\t{type(e).__name__}: {str(e)[:200]}")
        raise AssertionError(f"{label}: {type(e).__name__} is not a clear error: {e}") from e
    try:
        assert not (isinstance(want, str) and want == REJECT), f"{label}: invalid input accepted"
        if not (isinstance(want, str) and want == ANY):
            assert_close(got, want, rtol, atol)
    except AssertionError:
        _record(f"wrong\t{label}")
        raise
    _record(f"ok\t{label}")
    return got


def assert_close(got, want, rtol, atol):
    if isinstance(want, (tuple, list)):
        assert isinstance(got, (tuple, list)) and len(got) == len(want), (type(got), len(want))
        for g, w in zip(got, want):
            assert_close(g, w, rtol, atol)
        return
    if want is None:
        assert got is None
        return
    g, w = np.asarray(got), np.asarray(want)
    assert g.shape == w.shape, f"shape {g.shape} != {w.shape}"
    np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=rtol, atol=atol, equal_nan=True)


# Variants of a valid float32 array: (name, value passed, the values a function accepting it must
# compute with; None when no numeric value is meant, so accepting it is wrong).
def variants(a: np.ndarray):
    a = np.ascontiguousarray(a, np.float32)
    out = [("float32", a, a), ("float64", a.astype(np.float64), a), ("list", a.tolist(), a),
           ("strided", np.repeat(a, 2, axis=-1)[..., ::2] if a.ndim else a, a),
           ("fortran", np.asfortranarray(a), a), ("readonly", _readonly(a), a),
           ("int32", np.round(a * 4).astype(np.int32), np.round(a * 4).astype(np.float32)),
           ("complex", a.astype(np.complex64), None), ("str", "abc", None), ("none", None, None),
           ("object", np.array([object()], dtype=object), None), ("scalar", 3.0, np.float32(3.0))]
    if a.ndim:
        wrong = np.zeros(a.shape[:-1] + (a.shape[-1] + 1,), np.float32)
        nan = a.copy()
        nan.flat[0] = np.nan
        inf = a.copy()
        inf.flat[-1] = np.inf
        out += [("tuple", _tuples(a.tolist()), a), ("wrong_last_dim", wrong, wrong), ("extra_dim", a[None, None], a[None, None]),
                ("nan", nan, nan), ("inf", inf, inf), ("empty", a[:0], a[:0])]
    return out


def _readonly(a):
    r = a.copy()
    r.flags.writeable = False
    return r


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, list) else x


def variant_index(a_ndim: int):
    """A strategy choosing one of the variants of an array with a_ndim dimensions."""
    return st.integers(0, len(variants(np.zeros((1,) * a_ndim, np.float32))) - 1)


def float_arrays(shape, scale=1.0):
    return st.integers(0, 2**32 - 1).map(
        lambda seed: (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32))


# Bad and good integers for sizes and counts.
INT_VARIANTS = [("zero", 0), ("negative", -1), ("float", 2.5), ("str", "3"), ("none", None), ("bool", True),
                ("huge", 2**62), ("nan", float("nan")), ("numpy_int", np.int64(2)), ("one", 1), ("two", 2)]
