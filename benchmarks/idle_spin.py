#!/usr/bin/env python
"""One call every 20 ms, LSTM B=1 T=100 H=256, 2 threads: rnnfast by default (early wake-ups before
periodic calls, csrc/core/team.h set_prewake), without them, with set_idle_spin(30000) (workers
spin 30 ms after a call, as ORT's pool does), and ONNX Runtime with its default (spinning) pool.
Blocks of calls rotated over several rounds; medians."""
import sys
import time

import numpy as np

import rnnfast
from rnnfast import _core
from _ort_lstm import lstm_and_session

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
calls, gap = 25, 0.02
m, x, ours, onnx = lstm_and_session(H=256, T=100, B=1)
cases = {"rnnfast default": (ours, 0, True), "rnnfast, no early wake-ups": (ours, 0, False),
         "rnnfast idle spin 30 ms": (ours, 30000, True), "onnxruntime": (onnx, 0, True)}
times = {k: [] for k in cases}
cpu = {k: [] for k in cases}
for r in range(rounds):
    for name, (fn, spin, prewake) in cases.items():
        rnnfast.set_idle_spin(spin)
        rnnfast.set_prewake(prewake)
        fn(); time.sleep(0.05)
        c0 = time.process_time(); w0 = time.perf_counter()
        for _ in range(calls):
            time.sleep(gap)
            t0 = time.perf_counter(); fn(); times[name].append(time.perf_counter() - t0)
        cpu[name].append((time.process_time() - c0) / (time.perf_counter() - w0))
rnnfast.set_idle_spin(0)
rnnfast.set_prewake(True)
for k, v in times.items():
    print(f"{k:26s} median {np.median(v)*1e6:7.1f} us  p25 {np.percentile(v,25)*1e6:7.1f}  p75 {np.percentile(v,75)*1e6:7.1f}"
          f"  process CPU while serving {np.median(cpu[k]):.2f} cores")
