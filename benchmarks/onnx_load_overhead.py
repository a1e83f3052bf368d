"""What ``rnnfast.onnx.load``'s session costs on top of the nn module it runs, and ONNX Runtime on the same graph.

    python benchmarks/onnx_load_overhead.py [--reps 15] [--threads 2]

Each configuration exports a 2-layer ``nn.LSTM`` with ``rnnfast.onnx.export``, loads it back, checks
that the session, its ``.module`` and ONNX Runtime agree (1e-5), then times the three interleaved:
``--reps`` rounds, each calling every engine ``inner`` times; the medians and their ratios to the
module are printed. The session's extra work is the numpy glue of the graph (Slice of the stacked
states, Transpose/Reshape of Y, Concat of the final states) and the argument checks.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np

import rnnfast
import rnnfast.onnx
from rnnfast import nn

CONFIGS = [(1, 10, 32, 50), (1, 100, 256, 5), (64, 100, 256, 2)]  # B, T, H, calls per round


def _ort(path, threads):
    """ONNX Runtime as `rnnfast bench` runs it (its pool stops spinning after run(): no slowdown of the next engine)."""
    try:
        import onnx
        from rnnfast.bench.peer_onnx import make_session
        sess = make_session(onnx.load(path), threads)
    except ImportError:
        return None
    return lambda feed: sess.run(None, feed)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    rnnfast.set_num_threads(args.threads)
    print(f"{'B':>3} {'T':>4} {'H':>4} | {'module':>10} {'session':>10} {'ORT':>10} | session/module  ORT/module")
    for B, T, H, inner in CONFIGS:
        path = os.path.join(tempfile.mkdtemp(), "m.onnx")
        rnnfast.onnx.export(nn.LSTM(H, H, num_layers=2, seed=0).eval(), path)
        run = rnnfast.onnx.load(path)
        rng = np.random.default_rng(0)
        feed = dict(x=rng.standard_normal((T, B, H)).astype(np.float32), lengths=np.full(B, T, np.int32),
                    h0=np.zeros((2, B, H), np.float32), c0=np.zeros((2, B, H), np.float32))
        engines = {"module": lambda f: run.module(f["x"], (f["h0"], f["c0"]), lengths=f["lengths"]),
                   "session": lambda f: run(**f)}
        ort = _ort(path, args.threads)
        if ort is not None:
            engines["ORT"] = ort
        want = engines["module"](feed)[0]
        for name, fn in engines.items():
            np.testing.assert_allclose(fn(feed)[0], want, rtol=1e-5, atol=1e-5, err_msg=name)
        times = {name: [] for name in engines}
        for _ in range(args.reps):
            for name, fn in engines.items():
                t = time.perf_counter()
                for _ in range(inner):
                    fn(feed)
                times[name].append((time.perf_counter() - t) / inner)
        med = {name: statistics.median(v) for name, v in times.items()}
        ort_ms = f"{med['ORT'] * 1e3:10.3f}" if "ORT" in med else f"{'-':>10}"
        ort_ratio = f"{med['ORT'] / med['module']:11.2f}" if "ORT" in med else f"{'-':>11}"
        print(f"{B:>3} {T:>4} {H:>4} | {med['module'] * 1e3:10.3f} {med['session'] * 1e3:10.3f} {ort_ms} | "
              f"{med['session'] / med['module']:14.2f} {ort_ratio}   (ms, medians of {args.reps})")


if __name__ == "__main__":
    main()
