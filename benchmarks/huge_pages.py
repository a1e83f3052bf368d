"""Packed weights on 2 MiB transparent huge pages against 4 KiB pages (B=1, the rows that re-read
W_hh every step; csrc/core/layer.h AlignedBuffer). Two copies of each model, one packed with the
test hook `_core._huge_pages(False)`, run in alternating blocks in one process; medians.

    python benchmarks/huge_pages.py [--rounds 11] [--threads 1,2]
"""
import argparse
import time

import numpy as np

import rnnfast
from rnnfast import _core


def packed_pair(cell, H, x):
    models = {}
    for huge in (False, True):
        _core._huge_pages(huge)
        m = getattr(rnnfast.nn, cell)(H, H, seed=0).eval()
        m(x)  # packs the weights now, under this setting
        models[huge] = m
    _core._huge_pages(True)
    return models


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    print(f"ISA: {rnnfast.cpu_info()['isa']}, rounds: {args.rounds}")
    print("| case | threads | 4 KiB pages | huge pages | speed-up | same bits |")
    print("|---|---|---|---|---|---|")
    for threads in (int(t) for t in args.threads.split(",")):
        rnnfast.set_num_threads(threads)
        for cell in ("LSTM", "GRU"):
            for H in (256, 512):
                x = np.random.default_rng(0).standard_normal((100, 1, H), dtype=np.float32)
                models = packed_pair(cell, H, x)
                times = {False: [], True: []}
                for _ in range(args.rounds):
                    for huge, m in models.items():
                        m(x)
                        t0 = time.perf_counter()
                        for _ in range(10):
                            m(x)
                        times[huge].append((time.perf_counter() - t0) / 10)
                a, b = (float(np.median(times[k])) for k in (False, True))
                same = np.array_equal(models[False](x)[0], models[True](x)[0])
                print(f"| {cell} B=1 T=100 H={H} | {threads} | {a * 1e6:.1f} us | {b * 1e6:.1f} us | {a / b:.3f}x | {same} |")


if __name__ == "__main__":
    main()
