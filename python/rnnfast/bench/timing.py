"""Interleaved timing of several engines, robust statistics, the physical peak and numpy's matmul rate."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import numpy as np


def summarize(samples: list[float]) -> dict:
    """Median and spread of per-call times in seconds."""
    a = np.asarray(samples, dtype=np.float64)
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return dict(median_s=float(med), min_s=float(a.min()), max_s=float(a.max()), q1_s=float(q1), q3_s=float(q3),
                iqr_pct=float(100.0 * (q3 - q1) / med) if med > 0 else 0.0, samples_s=[float(s) for s in a])


def _calls_per_sample(run, min_sample_time: float) -> int:
    """How many calls make one timed sample last at least min_sample_time (timeit's idea, for tiny calls)."""
    if min_sample_time <= 0:
        return 1
    t0 = time.perf_counter()
    run()
    once = time.perf_counter() - t0
    return max(1, min(10_000, math.ceil(min_sample_time / max(once, 1e-7))))


def measure(cases: dict, repeat: int, warmup: int = 2, min_sample_time: float = 0.02,
            steps_per_call: int = 1, interleave: bool = True, gap: float = 0.01) -> dict:
    """Time every case's ``run`` ``repeat`` times, interleaved (A1 B1 C1 A2 B2 ...), rotating who goes
    first each round so that no engine always follows the same neighbour (``interleave=False``: all of
    A's samples, then B's, to diagnose interference). ``gap`` seconds of idling after each sample let
    the worker threads of the engine just timed stop spinning (OpenMP pools spin ~5 ms after a call
    here) before the next engine starts. Returns name -> summary of the time per step (per call
    divided by steps_per_call), or name -> {"error": ...} for a case that raised (the others go on)."""
    names = list(cases)
    failed: dict = {}
    number: dict = {}
    for name in names:
        try:
            for _ in range(warmup):
                cases[name].run()
            number[name] = _calls_per_sample(cases[name].run, min_sample_time)
        except Exception as exc:  # noqa: BLE001 - reported per engine
            failed[name] = f"{type(exc).__name__}: {exc}"
    live = [name for name in names if name not in failed]
    if interleave:
        order = [name for r in range(repeat) for name in live[r % len(live):] + live[:r % len(live)]] if live else []
    else:
        order = [name for name in live for _ in range(repeat)]
    samples: dict = {name: [] for name in live}
    perf = time.perf_counter
    for name in order:
        if name in failed:
            continue
        run, n = cases[name].run, number[name]
        try:
            t0 = perf()
            for _ in range(n):
                run()
            samples[name].append((perf() - t0) / (n * steps_per_call))
        except Exception as exc:  # noqa: BLE001
            failed[name] = f"{type(exc).__name__}: {exc}"
        if gap:
            time.sleep(gap)
    return {name: dict(error=failed[name]) if name in failed else
            dict(summarize(samples[name]), calls_per_sample=number[name]) for name in names}


def fma_peak(threads: int, repeat: int = 20, seconds: float = 0.01) -> dict:
    """The physical peak: GFLOP/s of the core's register-only FMA loop for the active ISA on ``threads``
    threads at once, the best of ``repeat`` samples of ~``seconds`` each (a machine constant: noise
    from other processes only ever lowers a sample, so the best is the estimate; the median is kept
    to show the noise). Efficiencies divide by this."""
    from rnnfast import _core

    samples = [float(_core.peak_gflops(threads, seconds)) for _ in range(repeat)]
    return dict(kind="fma", isa=_core.get_isa(), threads=threads, repeat=repeat, seconds_per_sample=seconds,
                gflops=max(samples), median_gflops=float(np.median(samples)), samples_gflops=samples)


_MATMUL_SCRIPT = """
import json, sys, time
import numpy as np
n, repeat = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
a = rng.standard_normal((n, n), dtype=np.float32)
b = rng.standard_normal((n, n), dtype=np.float32)
c = a @ b
times = []
for _ in range(repeat):
    t0 = time.perf_counter(); np.matmul(a, b, out=c); times.append(time.perf_counter() - t0)
print(json.dumps(times))
"""


def matmul_rate(threads: int, n: int = 2048, repeat: int = 7) -> dict:
    """Single-precision GEMM rate of numpy's BLAS at ``threads`` threads (median of ``repeat``): informational
    only, never a peak (a BLAS can run well below the hardware, e.g. with OPENBLAS_CORETYPE set).

    Runs in a child process because the BLAS thread count can only be set before numpy loads it,
    and so that the BLAS threads do not linger next to the engines being timed.
    """
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    try:
        done = subprocess.run([sys.executable, "-c", _MATMUL_SCRIPT, str(n), str(repeat)], env=env,
                              capture_output=True, text=True, timeout=300, check=True)
        times = json.loads(done.stdout.strip().splitlines()[-1])
        where = "subprocess"
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        # fallback: this process, whatever thread count its BLAS already has
        a = np.ones((n, n), np.float32)
        a @ a
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            a @ a
            times.append(time.perf_counter() - t0)
        where = "in-process (BLAS thread count not controlled)"
    med = float(np.median(times))
    return dict(n=n, threads=threads, repeat=repeat, median_s=med, gflops=2.0 * n ** 3 / med / 1e9,
                samples_s=[float(t) for t in times], measured=where)


class OtherLoad:
    """Share of the machine's CPU time that other processes used between start() and stop().

    On a shared machine this is the first thing to look at when timings scatter: /proc/stat's busy
    time of all CPUs minus this process's own (and its children's) CPU time. Linux only (else None).
    """

    def __init__(self):
        self._start = None

    @staticmethod
    def _snapshot():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # all but idle and iowait
        t = os.times()
        own = t.user + t.system + t.children_user + t.children_system
        return busy / os.sysconf("SC_CLK_TCK"), own, time.monotonic()

    def start(self) -> "OtherLoad":
        self._start = self._snapshot()
        return self

    def stop(self) -> float | None:
        end = self._snapshot()
        if self._start is None or end is None:
            return None
        busy, own, wall = (e - s for e, s in zip(end, self._start))
        cpus = os.cpu_count() or 1
        return max(0.0, (busy - own) / (wall * cpus)) if wall > 0 else None
