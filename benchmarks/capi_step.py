"""Per-step cost of one stream step from C (the installed C API), from Python (``Stream.step``)
and in ONNX Runtime (a T=1 run with the state fed back), on the same exported model, in one process.

    python benchmarks/capi_step.py --prefix <where cmake --install put rnnfast> [--threads 2]

Models: LSTM H=256 (input 256, B=1) and a 2-layer char LM (LSTM 256, embedding 64, 98 tokens; one
token in, next-token logits out; Python does the embedding row and the output layer as
LanguageModel.generate does). Engines run interleaved in rounds of --steps steps; the table has
the median (and the minimum) of --rounds rounds per engine and the ratios of the medians to C. Every engine's output is checked
against the C API's before timing.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import rnnfast
import rnnfast.onnx
from rnnfast import nn
from rnnfast.models import LanguageModel


def load_c(prefix: str, work: str):
    timer = os.path.join(work, "capi_step_timer.so")
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "capi_step_timer.c")
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", src, f"-I{prefix}/include", f"-L{prefix}/lib", "-lrnnfast",
                    f"-Wl,-rpath,{prefix}/lib", "-o", timer], check=True)
    lib = ctypes.CDLL(os.path.join(prefix, "lib", "librnnfast.so"))
    t = ctypes.CDLL(timer)
    p = ctypes.c_void_p
    lib.rnnfast_model_load.argtypes = [ctypes.c_char_p, ctypes.POINTER(p)]
    lib.rnnfast_stream_create.argtypes = [p, ctypes.c_int, ctypes.POINTER(p)]
    lib.rnnfast_last_error.restype = ctypes.c_char_p
    t.rnnfast_bench_steps.argtypes = [p, ctypes.c_int, p, p, p, ctypes.c_int]
    t.rnnfast_bench_steps.restype = ctypes.c_double
    return lib, t


def c_stream(lib, path):
    m, s = ctypes.c_void_p(), ctypes.c_void_p()
    if lib.rnnfast_model_load(path.encode(), ctypes.byref(m)) or lib.rnnfast_stream_create(m, 1, ctypes.byref(s)):
        raise RuntimeError(lib.rnnfast_last_error().decode())
    return s


def ort_session(module, path, threads):
    import onnxruntime as ort
    rnnfast.onnx.export(module, path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.force_spinning_stop", "1")  # as rnnfast.bench.peer_onnx does
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"]), ort.__version__


def ort_steps(sess, feed, steps, ys):
    """A timed run of `steps` T=1 session runs, the final (h, c) fed back as the next initial state."""
    def run():
        f = dict(feed)
        t0 = time.perf_counter()
        for _ in range(steps):
            out, h, c = sess.run(None, f)
            f["h0"], f["c0"] = h, c
        ys["ONNX Runtime"] = out[0]
        return time.perf_counter() - t0
    return run


def engines_lstm(lib, timer, work, threads, steps):
    m = nn.LSTM(256, 256, seed=0).eval()
    path = os.path.join(work, "lstm.rnnfast")
    rnnfast.export(m, path)
    x = np.random.default_rng(0).standard_normal((1, 256)).astype(np.float32)
    y = np.empty((1, 256), np.float32)
    s = c_stream(lib, path)
    ys = {}

    def run_c():
        t = timer.rnnfast_bench_steps(s, 0, x.ctypes.data, None, y.ctypes.data, steps)
        ys["C API"] = y.copy()
        return t

    py = m.stream(1)
    step = py.step

    def run_py():
        t0 = time.perf_counter()
        for _ in range(steps):
            step(x, y)
        ys["Python stream.step"] = y.copy()
        return time.perf_counter() - t0

    sess, _ = ort_session(m, os.path.join(work, "lstm.onnx"), threads)
    z = np.zeros((1, 1, 256), np.float32)
    run_ort = ort_steps(sess, dict(x=x[None], lengths=np.ones(1, np.int32), h0=z, c0=z), steps, ys)
    return {"C API": run_c, "Python stream.step": run_py, "ONNX Runtime": run_ort}, ys


def engines_charlm(lib, timer, work, threads, steps):
    lm = LanguageModel(98, 64, 256, num_layers=2, seed=0).eval()
    path = os.path.join(work, "charlm.rnnfast")
    rnnfast.export(lm, path)
    token = 7
    ids = np.array([token], np.int32)
    logits = np.empty((1, 98), np.float32)
    s = c_stream(lib, path)
    ys = {}

    def run_c():
        t = timer.rnnfast_bench_steps(s, 1, None, ids.ctypes.data, logits.ctypes.data, steps)
        ys["C API"] = logits.copy()
        return t

    py = lm.rnn.stream(1)
    step, table = py.step, lm.embedding.weight.data
    w_t, bias = lm.decoder.weight.data.T, lm.decoder.bias.data
    h = np.empty((1, 256), np.float32)
    out = np.empty((1, 98), np.float32)

    def run_py():  # what LanguageModel.generate does per token, without the sampling
        t0 = time.perf_counter()
        for _ in range(steps):
            step(table[token:token + 1], h)
            np.dot(h, w_t, out=out)
            np.add(out, bias, out=out)
        ys["Python stream.step"] = out.copy()
        return time.perf_counter() - t0

    sess, _ = ort_session(lm, os.path.join(work, "charlm.onnx"), threads)
    z = np.zeros((2, 1, 256), np.float32)
    run_ort = ort_steps(sess, dict(ids=np.array([[token]], np.int64), lengths=np.ones(1, np.int32), h0=z, c0=z),
                        steps, ys)
    return {"C API": run_c, "Python stream.step": run_py, "ONNX Runtime": run_ort}, ys


def measure(engines, outputs, steps, rounds):
    for run in engines.values():  # warm up, and the same number of steps from zero state for the check
        run()
    ref = outputs["C API"]
    for name, y in outputs.items():
        err = float(np.abs(np.asarray(y).reshape(ref.shape) - ref).max())
        if err > 1e-4 * max(1.0, float(np.abs(ref).max())):
            raise SystemExit(f"{name}: output differs from the C API's by {err}")
    times = {name: [] for name in engines}
    for r in range(rounds):
        order = list(engines) if r % 2 == 0 else list(reversed(engines))  # interleaved, alternating order
        for name in order:
            times[name].append(engines[name]() / steps)
    return {name: (statistics.median(t), min(t)) for name, t in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prefix", required=True, help="install prefix of the C API (cmake --install --prefix)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=200, help="steps per round")
    ap.add_argument("--rounds", type=int, default=21)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        lib, timer = load_c(a.prefix, work)
        lib.rnnfast_set_num_threads(a.threads)
        rnnfast.set_num_threads(a.threads)
        import onnxruntime
        print(f"threads {a.threads}, {a.rounds} interleaved rounds of {a.steps} steps, medians; "
              f"rnnfast ISA {rnnfast.cpu_info()['isa']}, onnxruntime {onnxruntime.__version__}")
        print("| model | engine | median per step | min | median vs C API |")
        print("|---|---|---|---|---|")
        for label, build in (("LSTM H=256, B=1", engines_lstm), ("char LM, 2-layer LSTM 256, V=98", engines_charlm)):
            engines, outputs = build(lib, timer, work, a.threads, a.steps)
            med = measure(engines, outputs, a.steps, a.rounds)
            for name, (t, lo) in med.items():
                print(f"| {label} | {name} | {t * 1e6:.1f} us | {lo * 1e6:.1f} us | {t / med['C API'][0]:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
