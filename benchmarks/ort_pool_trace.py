#!/usr/bin/env python
"""Why rnnfast is slower right after an ORT run: LSTM B=64 T=100 H=512 eval, 2 threads, our call
(a) right after an ORT run (its pool still spinning), (b) after an ORT run and 80 ms of sleep (its
pool asleep), (c) with no ORT run before. Rotated rounds, medians; ORT's own time too."""
import os, tempfile, time, resource
import numpy as np, onnxruntime as ort
import rnnfast, rnnfast.onnx
m = rnnfast.nn.LSTM(512, 512, seed=0).eval()
x = np.random.default_rng(0).standard_normal((100, 64, 512)).astype(np.float32)
path = os.path.join(tempfile.mkdtemp(), "m.onnx"); rnnfast.onnx.export(m, path)
so = ort.SessionOptions(); so.intra_op_num_threads = 2; so.inter_op_num_threads = 1
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
feed = {"x": x, "lengths": np.full(64, 100, np.int32), "h0": np.zeros((1, 64, 512), np.float32),
        "c0": np.zeros((1, 64, 512), np.float32)}
def cpu(): r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime
res = {k: [] for k in ("after ORT run", "after ORT run + 80 ms", "no ORT before", "ORT itself", "ORT spin CPU (ms) in 80 ms sleep")}
for _ in range(3): m(x); s.run(None, feed)
for r in range(9):
    t0 = time.perf_counter(); s.run(None, feed); res["ORT itself"].append(time.perf_counter() - t0)
    t0 = time.perf_counter(); m(x); res["after ORT run"].append(time.perf_counter() - t0)
    s.run(None, feed); c0 = cpu(); time.sleep(0.08); res["ORT spin CPU (ms) in 80 ms sleep"].append((cpu() - c0) * 1e3 / 1e3)
    t0 = time.perf_counter(); m(x); res["after ORT run + 80 ms"].append(time.perf_counter() - t0)
    time.sleep(0.08)
    t0 = time.perf_counter(); m(x); res["no ORT before"].append(time.perf_counter() - t0)
for k, v in res.items():
    print(f"{k:34s} median {np.median(v)*1e3:7.2f} ms")
