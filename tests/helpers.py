"""Test utilities: ISA paths of this machine, weight transfer to PyTorch, random data."""
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np

import rnnfast

ISAS = rnnfast.cpu_info()["isas_available"]
_DOTS = rnnfast.cpu_info()["dot_products"]
# Reduced-precision paths: every ISA with its fallback (dot products off), plus the dot-product
# twin where this CPU has the instructions (int8: VNNI; bfloat16: AVX512_BF16).
INT8_PATHS = [(i, False) for i in ISAS] + [(i, True) for i in ISAS if (i == "avx2" and _DOTS["avx_vnni"]) or
                                             (i == "avx512" and _DOTS["avx512_vnni"])]
BF16_PATHS = [(i, False) for i in ISAS] + [("avx512", True) for i in ISAS if i == "avx512" and _DOTS["avx512_bf16"]
                                           and _DOTS["avx512_vnni"]]


@contextlib.contextmanager
def using_path(isa, dot):
    """Pack with one ISA's kernels, with or without its dot-product twin; restore both after."""
    before = rnnfast._core.get_isa(), rnnfast._core.get_dot_products()
    rnnfast.set_isa(isa)
    rnnfast._core.set_dot_products(dot)
    try:
        yield
    finally:
        rnnfast.set_isa(before[0])
        rnnfast._core.set_dot_products(before[1])


@contextlib.contextmanager
def using_isa(isa):
    """Run the kernels of one instruction set, then restore the previous one."""
    before = rnnfast._core.get_isa()
    rnnfast.set_isa(isa)
    try:
        yield
    finally:
        rnnfast.set_isa(before)


def torch_twin(torch, module):
    """The torch.nn module with the same configuration and weights as an rnnfast recurrent module."""
    kind = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}.get(module.cell, torch.nn.RNN)
    kwargs = dict(num_layers=module.num_layers, bias=module.bias, batch_first=module.batch_first,
                  bidirectional=module.bidirectional)
    if kind is torch.nn.RNN:
        kwargs["nonlinearity"] = module.nonlinearity
    twin = kind(module.input_size, module.hidden_size, **kwargs)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in module.state_dict().items()})
    return twin


def assert_gradients_match_differences(loss, p, grads, wrt, eps=1e-6):
    """grads[wrt[name]] against central differences of loss(p) in every element of p[name] (float64)."""
    for name, gname in wrt.items():
        num = np.zeros_like(p[name])
        for idx in np.ndindex(p[name].shape):
            q = dict(p)
            q[name] = p[name].copy()
            q[name][idx] += eps
            up = loss(q)
            q[name][idx] -= 2 * eps
            num[idx] = (up - loss(q)) / (2 * eps)
        np.testing.assert_allclose(grads[gname], num, rtol=1e-6, atol=1e-7, err_msg=name)


def randn(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def fail_half_write(monkeypatch, exc=None):
    """Make the next file opened through os.fdopen (the atomic writer's temp file) crash after
    writing half of its data, as a process killed mid-save would."""
    exc = exc or OSError("simulated crash")
    real = os.fdopen

    class HalfWriter:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            raise exc

    monkeypatch.setattr(os, "fdopen", lambda *a, **k: HalfWriter(real(*a, **k)))


def in_threads(fn, n):
    """[fn(0), ..., fn(n-1)], each computed on its own thread, all running at once."""
    out = [None] * n

    def run(i):
        out[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def interrupt_python(code: str, after: float):
    """Run code in a fresh interpreter, send it SIGINT `after` seconds after it printed "ready",
    and return (returncode, stdout, stderr)."""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(after)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return proc.returncode, out, err


# Source text for tests that run in a fresh interpreter (so a definition to paste, not an import):
# in_forked_children(child, n) forks n children of the running process ('fork' start method), each
# calling child(queue) to put one result; returns the results once every child exited cleanly.
# Daemon children: a hung child dies with the parent, whose queue wait times out.
IN_FORKED_CHILDREN = """
def in_forked_children(child, n=2):
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=child, args=(q,), daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    outs = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0, p.exitcode
    return outs
"""
