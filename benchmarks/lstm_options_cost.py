"""What layer_norm=True and proj_size cost against the plain LSTM of the same hidden size:
nn.LSTM eval forward and training forward+backward, interleaved rounds (rnnfast.bench.timing's
measure: each variant once per round, the first rotating), medians and their ratio to the plain
LSTM's, all in one process with the same thread count.

    python benchmarks/lstm_options_cost.py [--repeat 9] [--threads 2] [--configs 64-100-512,1-100-256]

A configuration is B-T-H (input size = hidden size, one layer); proj_size is H/2. The load average
is printed with the table: on a shared machine the ratios are what to read, not the times.
"""
from __future__ import annotations

import argparse
import os
from types import SimpleNamespace

import numpy as np

import rnnfast
from rnnfast import nn
from rnnfast.bench.timing import measure


def cases(B, T, H, train: bool):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, H)).astype(np.float32)
    out = {}
    for name, kw in (("plain", {}), ("layer_norm", {"layer_norm": True}), ("proj_size=H/2", {"proj_size": H // 2})):
        m = nn.LSTM(H, H, seed=0, **kw).train(train)
        g = np.ones((T, B, m._state_size), np.float32)

        def run(m=m, g=g):
            y, _ = m(x)
            if train:
                m.backward(g)
        out[name] = SimpleNamespace(run=run)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--configs", default="64-100-512,1-100-256")
    args = ap.parse_args()
    rnnfast.set_num_threads(args.threads)
    print(f"isa {rnnfast._core.get_isa()}, {args.threads} threads, {args.repeat} interleaved rounds; "
          f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"{'B-T-H':>10} {'mode':>6} {'variant':>14} {'median ms':>10} {'IQR %':>6} {'x plain':>8}")
    for cfg in args.configs.split(","):
        B, T, H = (int(v) for v in cfg.split("-"))
        for mode, train in (("eval", False), ("train", True)):
            res = measure(cases(B, T, H, train), repeat=args.repeat, warmup=2, min_sample_time=0.0)
            base = res["plain"]["median_s"]
            for name, r in res.items():
                print(f"{cfg:>10} {mode:>6} {name:>14} {1e3 * r['median_s']:10.2f} {r['iqr_pct']:6.1f} "
                      f"{r['median_s'] / base:8.2f}")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
