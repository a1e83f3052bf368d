#!/usr/bin/env python
"""Stream step time of LSTM(256, 256) and GRU(256, 256), B=1, on 1 and 2 threads, in THIS fresh
process (median of 200 x 50 steps). Run it several times: the team's plan and load backoff start
afresh in every process. FORCE=2 forces both threads (no load backoff) for comparison.

    for i in $(seq 10); do python benchmarks/stream_fresh_process.py; done
"""
import json
import os
import time

import numpy as np

import rnnfast
from rnnfast import _core, nn

if os.environ.get("FORCE"):
    _core._team_testing(int(os.environ["FORCE"]))
rng = np.random.default_rng(0)
out = {}
for threads in (1, 2):
    rnnfast.set_num_threads(threads)
    for cell, cls in (("lstm", nn.LSTM), ("gru", nn.GRU)):
        s = cls(256, 256, seed=1).eval().stream(1)
        xs = rng.standard_normal((1, 256)).astype(np.float32)
        for _ in range(200):
            s.step(xs)
        t = []
        for _ in range(200):
            t0 = time.perf_counter()
            for _ in range(50):
                s.step(xs)
            t.append((time.perf_counter() - t0) / 50)
        out[f"{cell} {threads} thread{'s' if threads > 1 else ''} (us)"] = round(float(np.median(t)) * 1e6, 2)
print(json.dumps(out))
