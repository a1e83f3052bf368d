"""Regression tests for issue 11's smaller Python items: stale temporary files of killed saves,
NaN statistics from standardize, non-finite word vectors."""
import os
import subprocess
import sys

import numpy as np
import pytest

import rnnfast
from rnnfast import _atomic
from rnnfast.data import standardize


def temp_files(directory, name):
    return sorted(f for f in os.listdir(directory) if f.startswith("." + name + ".") and f.endswith(".tmp"))


def killed_writer(target):
    """A process that starts an atomic save of target and is killed in the middle of it."""
    code = f"""
import os, signal
from rnnfast._atomic import atomic_open
with atomic_open({str(target)!r}, "wb") as f:
    f.write(b"half")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert r.returncode == -9


def test_a_later_save_removes_temp_files_of_killed_writers(tmp_path):
    target = tmp_path / "model.npz"
    for _ in range(3):
        killed_writer(target)
    assert len(temp_files(tmp_path, "model.npz")) == 1  # each writer removed its dead predecessor's
    _atomic.atomic_write(target, b"complete")
    assert temp_files(tmp_path, "model.npz") == []
    assert target.read_bytes() == b"complete"


def test_temp_files_of_live_writers_and_other_targets_are_kept(tmp_path):
    target = tmp_path / "model.npz"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f"{_atomic._temp_prefix('model.npz')}{sleeper.pid}.abc.tmp"
        live.write_bytes(b"being written")
        own = tmp_path / f"{_atomic._temp_prefix('model.npz')}{os.getpid()}.abc.tmp"  # another thread's
        own.write_bytes(b"being written")
        other = tmp_path / f"{_atomic._temp_prefix('other.npz')}999999999.abc.tmp"
        other.write_bytes(b"not ours")
        unknown = tmp_path / ".model.npz.someone.tmp"  # not our naming: leave it
        unknown.write_bytes(b"?")
        _atomic.atomic_write(target, b"x")
        assert live.exists() and own.exists() and other.exists() and unknown.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    _atomic.atomic_write(target, b"y")  # the sleeper is dead now
    assert not live.exists() and own.exists()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_standardize_refuses_non_finite_input(bad):
    x = np.ones((5, 3), np.float32)
    x[2, 1] = bad
    with pytest.raises(ValueError, match=r"x: expected finite values, got .* at index \(2, 1\)"):
        standardize(x)


def test_standardize_refuses_non_finite_statistics():
    x = np.ones((5, 2), np.float32)
    with pytest.raises(ValueError, match="mean: expected finite"):
        standardize(x, np.array([0.0, np.nan]), np.ones(2))
    with pytest.raises(ValueError, match="std: expected finite"):
        standardize(x, np.zeros(2), np.array([1.0, np.inf]))


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_load_word_vectors_refuses_non_finite_vectors(tmp_path, value):
    path = tmp_path / "vectors.txt"
    path.write_text(f"the 0.1 0.2 0.3\ncat 0.5 {value} 0.1\n", encoding="utf-8")
    emb = rnnfast.nn.Embedding(3, 3)
    before = emb.weight.data.copy()
    with pytest.raises(ValueError, match=r"vectors.txt: line 2: the vector of 'cat' has non-finite values"):
        emb.load_word_vectors(path, {"the": 1, "cat": 2})
    np.testing.assert_array_equal(emb.weight.data, before)  # nothing half-loaded


def test_cross_entropy_ignored_rows_do_not_leak_nan():
    # Found by the fuzz suite: a NaN in an ignored row made the mean loss NaN (torch: 0.8544).
    from rnnfast import losses
    logits = np.array([[np.nan, 1.0], [0.5, 0.2]], np.float32)
    loss, grad = losses.cross_entropy(logits, np.array([-100, 1]))
    z = logits[1].astype(np.float64)
    assert loss == pytest.approx(np.log(np.exp(z).sum()) - z[1])
    np.testing.assert_array_equal(grad[0], 0.0)
    assert np.isfinite(grad).all()
