"""One eval LSTM layer, its input, and the same model in an ONNX Runtime session that keeps ORT's
default (spinning) thread pool: the setup the idle-gap and ORT-pool scripts share."""
import os
import tempfile

import numpy as np

import rnnfast
import rnnfast.onnx
from rnnfast.bench.peer_onnx import make_session


def lstm_and_session(H: int, T: int, B: int, threads: int = 2):
    """(module, x, run_ours, run_ort): run_ort is checked against the module's output first."""
    import onnx
    m = rnnfast.nn.LSTM(H, H, seed=0).eval()
    x = np.random.default_rng(0).standard_normal((T, B, H)).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        rnnfast.onnx.export(m, os.path.join(d, "m.onnx"))
        session = make_session(onnx.load(os.path.join(d, "m.onnx")), threads, stop_spinning=False)
    zeros = np.zeros((1, B, H), np.float32)
    feed = {"x": x, "lengths": np.full(B, T, np.int32), "h0": zeros, "c0": zeros}
    assert np.abs(session.run(None, feed)[0] - m(x)[0]).max() < 1e-4
    return m, x, lambda: m(x), lambda: session.run(None, feed)
