"""Data-parallel charlm on one host: N ranks x 1 thread against 1 process x N threads, and the allreduce.

    python benchmarks/distributed_scaling.py [--ranks 2] [--reps 3] [--steps 150] [charlm options ...]

Runs `rnnfast charlm train` (default model: 2 x 256 LSTM, batch 32 x seq 64, the stdlib corpus)
alternately as `mpiexec -n N ... --distributed --threads 1` and as one process with `--threads N`,
`--reps` times each, and prints the median training tokens/s of each (evaluation excluded, as the
command reports it), their ratio, and the gradient allreduce time per step that rank 0 reports
(waiting for the slower rank included). Then, separately, the bare MPI_Allreduce of a buffer the
model's size between ranks that start together (a barrier first): the communication alone.
The machine's load average is printed before and after: on a shared machine read the ratio, not
the absolute speeds.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

SPEED = re.compile(r"speed: ([\d,]+) tokens/s")
ALLREDUCE = re.compile(r"gradient allreduce ([\d.]+) ms per step")
PARAMS = re.compile(r"([\d,]+) parameters")


def _run(argv):
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def _allreduce_alone(mpiexec, ranks, floats, reps=50):
    code = ("import time, numpy as np; from mpi4py import MPI; c = MPI.COMM_WORLD; b = np.ones(%d, np.float32); "
            "t = []\nfor _ in range(%d):\n    c.Barrier(); s = time.perf_counter(); c.Allreduce(MPI.IN_PLACE, b); "
            "t.append(time.perf_counter() - s)\nif c.rank == 0: print(sorted(t)[len(t) // 2])") % (floats, reps)
    return float(_run([mpiexec, "-n", str(ranks), sys.executable, "-c", code]).strip())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--steps", type=int, default=150)
    a, charlm_opts = p.parse_known_args(argv)
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
    if mpiexec is None:
        raise SystemExit("mpiexec not found: pip install 'rnnfast[mpi]'")
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    base = [sys.executable, "-m", "rnnfast.cli", "charlm", "train", "--steps", str(a.steps), "--eval-interval",
            str(10 * a.steps), "--sample-len", "0", "--log-interval", str(10 * a.steps), *charlm_opts]
    dist_speeds, one_speeds, reduce_ms, n_params = [], [], [], None
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(a.reps):  # interleaved, so a change of load hits both sides alike
            out = _run([mpiexec, "-n", str(a.ranks), *base, "--distributed", "--threads", "1",
                        "--checkpoint-dir", os.path.join(tmp, f"d{rep}")])
            dist_speeds.append(float(SPEED.search(out).group(1).replace(",", "")))
            reduce_ms.append(float(ALLREDUCE.search(out).group(1)))
            n_params = int(PARAMS.search(out).group(1).replace(",", ""))
            out = _run([*base, "--threads", str(a.ranks), "--checkpoint-dir", os.path.join(tmp, f"o{rep}")])
            one_speeds.append(float(SPEED.search(out).group(1).replace(",", "")))
            print(f"rep {rep}: {a.ranks} ranks x 1 thread {dist_speeds[-1]:,.0f} tokens/s (allreduce "
                  f"{reduce_ms[-1]:.2f} ms/step) | 1 process x {a.ranks} threads {one_speeds[-1]:,.0f} tokens/s")
    d, o = statistics.median(dist_speeds), statistics.median(one_speeds)
    bare = _allreduce_alone(mpiexec, a.ranks, n_params)
    print(f"median: {a.ranks} ranks x 1 thread {d:,.0f} tokens/s, 1 process x {a.ranks} threads {o:,.0f} tokens/s, "
          f"ratio {d / o:.2f}")
    print(f"gradient allreduce in training: median {statistics.median(reduce_ms):.2f} ms per step (rank 0, waiting "
          f"included); bare MPI_Allreduce of {n_params:,} float32 after a barrier: {1e3 * bare:.3f} ms (median of 50)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
