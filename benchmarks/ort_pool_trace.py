#!/usr/bin/env python
"""Why rnnfast is slower right after an ORT run: LSTM B=64 T=100 H=512 eval, 2 threads, our call
(a) right after an ORT run (its pool still spinning), (b) after an ORT run and 80 ms of sleep (its
pool asleep), (c) with no ORT run before. Rotated rounds, medians; ORT's own time too."""
import resource
import time

import numpy as np

from _ort_lstm import lstm_and_session

m, x, ours, ort_run = lstm_and_session(H=512, T=100, B=64)
def cpu(): r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime
res = {k: [] for k in ("after ORT run", "after ORT run + 80 ms", "no ORT before", "ORT itself", "ORT spin CPU in 80 ms sleep")}
for _ in range(3):
    ours()
    ort_run()
for r in range(9):
    t0 = time.perf_counter(); ort_run(); res["ORT itself"].append(time.perf_counter() - t0)
    t0 = time.perf_counter(); ours(); res["after ORT run"].append(time.perf_counter() - t0)
    ort_run(); c0 = cpu(); time.sleep(0.08); res["ORT spin CPU in 80 ms sleep"].append(cpu() - c0)
    t0 = time.perf_counter(); ours(); res["after ORT run + 80 ms"].append(time.perf_counter() - t0)
    time.sleep(0.08)
    t0 = time.perf_counter(); ours(); res["no ORT before"].append(time.perf_counter() - t0)
for k, v in res.items():
    print(f"{k:34s} median {np.median(v)*1e3:7.2f} ms")
