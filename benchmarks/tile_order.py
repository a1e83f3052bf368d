"""Steps that alternate their tile order against steps that always run it forward (B=1).

A B=1 step reads each thread's slice of the recurrent weights once. When the slice is larger than
the thread's cache (LSTM H=512: 2 MB per thread of 2; a stream step's W_ih and W_hh together),
least-recently-used eviction drops every line just before the next step reads it; reversing every
other step starts it on the lines the step before left in cache (kernels/phases.h). The switch is
the test hook `_core._alternate_tile_order`; the results are bitwise the same either way (checked).

    python benchmarks/tile_order.py [--rounds 15] [--threads 2]

Blocks of calls alternate between the two orders in one process; medians over the blocks.
"""
import argparse
import time

import numpy as np

import rnnfast
from rnnfast import _core


def sequence_case(cell, H, T=100):
    m = getattr(rnnfast.nn, cell)(H, H).eval()
    x = np.random.default_rng(0).standard_normal((T, 1, H), dtype=np.float32)
    run = lambda: m(x)[0]
    return f"{cell} B=1 T={T} H={H}, per call", run, 20, run


def stream_case(cell, H):
    m = getattr(rnnfast.nn, cell)(H, H).eval()
    x = np.random.default_rng(0).standard_normal((1, H), dtype=np.float32)
    s = m.stream()

    def steps():  # five steps from the zero state: the same bits in either order
        fresh = m.stream()
        return np.stack([np.array(fresh.step(x), copy=True) for _ in range(5)])

    return f"{cell} stream B=1 H={H}, per step", lambda: s.step(x), 400, steps


def measure(run, calls, check, rounds):
    times = {True: [], False: []}
    outputs = {}
    for _ in range(rounds):
        for alternate in (False, True):
            _core._alternate_tile_order(alternate)
            for _ in range(3):
                run()
            t0 = time.perf_counter()
            for _ in range(calls):
                run()
            times[alternate].append((time.perf_counter() - t0) / calls)
            outputs[alternate] = np.array(check(), copy=True)
    _core._alternate_tile_order(True)
    return {k: float(np.median(v)) for k, v in times.items()}, outputs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    rnnfast.set_num_threads(args.threads)
    cases = [sequence_case(c, H) for c in ("LSTM", "GRU", "RNN") for H in (256, 512)]
    cases += [stream_case(c, H) for c in ("LSTM", "GRU") for H in (256, 512)]
    print(f"threads: {args.threads}, rounds: {args.rounds}, ISA: {rnnfast.cpu_info()['isa']}")
    print("| case | forward order | alternating | speed-up | same bits |")
    print("|---|---|---|---|---|")
    for name, run, calls, check in cases:
        t, out = measure(run, calls, check, args.rounds)
        same = np.array_equal(out[True], out[False])
        print(f"| {name} | {t[False] * 1e6:.1f} us | {t[True] * 1e6:.1f} us | {t[False] / t[True]:.3f}x | {same} |")


if __name__ == "__main__":
    main()
