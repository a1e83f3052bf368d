"""examples/recognize_speech.py: its streaming log-mel features and its DTW baseline on synthetic audio,
and (when the espeak-ng synthesizer is installed; required in CI) a smoke run of the whole example."""
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("recognize_speech", ROOT / "examples" / "recognize_speech.py")
speech = importlib.util.module_from_spec(_spec)
with mock.patch.dict(os.environ):   # the script sets OPENBLAS_NUM_THREADS for itself: keep it out of this process
    _spec.loader.exec_module(speech)


def _tone(freq, seconds=0.5):
    t = np.arange(int(seconds * speech.SAMPLE_RATE)) / speech.SAMPLE_RATE
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_log_mel_peaks_in_the_tone_band():
    fb = speech.mel_filterbank()
    centres = np.fft.rfftfreq(speech.N_FFT, 1 / speech.SAMPLE_RATE)[fb.argmax(1)]
    for freq in (300.0, 1000.0, 3000.0):
        feats = speech.log_mel(_tone(freq))
        assert feats.shape == (1 + (len(_tone(freq)) - speech.WINDOW) // speech.HOP, speech.N_MELS)
        peak = int(np.median(feats.argmax(1)))
        assert abs(centres[peak] - freq) < 0.15 * freq, (freq, centres[peak])


def test_log_mel_streamed_in_pieces_equals_one_pass():
    rng = np.random.default_rng(0)
    audio = rng.standard_normal(7919).astype(np.float32) * 0.1
    whole = speech.log_mel(audio)
    stream, parts, start = speech.LogMelStream(), [], 0
    for size in [1, 50, 399, 160, 1000, 3] * 10:
        parts.append(stream.feed(audio[start:start + size]))
        start += size
    parts.append(stream.feed(audio[start:]))
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-5, atol=1e-5)


def test_stack_frames_concatenates_consecutive_frames():
    feats = np.arange(14 * 2, dtype=np.float32).reshape(14, 2)
    out = speech.stack_frames(feats, 3)
    assert out.shape == (4, 6)
    np.testing.assert_array_equal(out[1], feats[3:6].reshape(-1))


def _dtw_reference(a, b):
    """Plain O(n m) DTW with the example's steps and normalisation."""
    n, m = len(a), len(b)
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost = np.linalg.norm(a[i - 1] - b[j - 1])
            acc[i, j] = cost + min(acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])
    return acc[n, m] / (n + m)


def test_dtw_matches_the_plain_recursion_and_finds_the_time_warped_twin():
    rng = np.random.default_rng(1)
    query = rng.standard_normal((9, 3)).astype(np.float32)
    stretched = np.repeat(query, 2, axis=0)                  # the same sequence, spoken twice as slowly
    templates = [rng.standard_normal((int(rng.integers(3, 14)), 3)).astype(np.float32) for _ in range(5)]
    templates.insert(3, stretched)
    d = speech.dtw_distances(query, templates)
    np.testing.assert_allclose(d, [_dtw_reference(query, t) for t in templates], rtol=1e-4)
    assert int(np.argmin(d)) == 3
    assert speech.dtw_distances(query, [query])[0] == pytest.approx(0.0, abs=1e-3)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_example_quick_run(cell):
    """The whole example in --quick mode: synthesis, training, streamed decoding, the DTW baseline."""
    if shutil.which("espeak-ng") is None:
        if os.environ.get("RNNFAST_REQUIRE_ESPEAK") == "1":
            pytest.fail("espeak-ng is required (RNNFAST_REQUIRE_ESPEAK=1) but is not installed")
        pytest.skip("espeak-ng not installed (apt-get install espeak-ng)")
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "recognize_speech.py"), "--quick", "--cell", cell],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    for needle in (f"CTC {cell.upper()}, prefix beam", "1-NN DTW", "real-time factor", "us per 10 ms audio frame", "as it arrived"):
        assert needle in proc.stdout, proc.stdout
