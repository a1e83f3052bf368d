"""A training step must not wake numpy's BLAS thread pool: its spinning threads fight the kernels'
threads for the cores. The probe: the CPU time of the threads numpy's BLAS started at import, before
and after a training loop, in a fresh process. A matrix product first proves the probe sees BLAS."""
import os
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent("""
    import os, sys
    import numpy as np

    me = str(os.getpid())
    blas = [t for t in os.listdir("/proc/self/task") if t != me]  # started by the BLAS library at import

    def ticks():
        total = 0
        for t in blas:
            try:
                with open(f"/proc/self/task/{t}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime + stime
            except FileNotFoundError:
                pass
        return total

    import rnnfast
    from rnnfast import losses, nn, optim

    def control():  # a product large enough for BLAS to use its threads
        a = np.ones((1024, 1024), np.float32)
        for _ in range(20):
            a @ a

    def train():
        rng = np.random.default_rng(0)
        emb, lstm, head = nn.Embedding(100, 32), nn.LSTM(32, 64, num_layers=2, batch_first=True), nn.Linear(64, 100)
        params = emb.parameters() + lstm.parameters() + head.parameters()
        opt = optim.Adam(params, lr=1e-3)
        for _ in range(40):
            ids = rng.integers(0, 100, size=(16, 33))
            out, _ = lstm(emb(ids[:, :-1]))
            loss, g = losses.cross_entropy(head(out), ids[:, 1:])
            emb.backward(lstm.backward(head.backward(g)))
            optim.clip_grad_norm(params, 1.0)
            opt.step()
            opt.zero_grad()

    which = sys.argv[1]
    import time
    time.sleep(0.5)  # OpenBLAS's new threads spin a while after import before they sleep
    before = ticks()
    (control if which == "control" else train)()
    time.sleep(0.3)  # let spinning BLAS threads burn what they will
    print(len(blas), ticks() - before)
""")


def _run(which):
    out = subprocess.run([sys.executable, "-c", PROBE, which], capture_output=True, text=True, timeout=300,
                         env={k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"})
    assert out.returncode == 0, out.stderr
    threads, ticks = map(int, out.stdout.split())
    return threads, ticks


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/task")
def test_training_step_leaves_numpys_blas_threads_asleep():
    threads, control = _run("control")
    if threads == 0 or control < 5:
        pytest.skip(f"numpy's BLAS runs no threads of its own here ({threads} threads, {control} ticks for "
                    "a 1024^3 product)")
    _, train = _run("train")
    assert train <= 2, f"BLAS threads used {train} clock ticks during training (control: {control})"

