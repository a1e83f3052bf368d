"""Training forward+backward through rnnfast.torch vs torch.nn, and the autograd glue's cost over
calling rnnfast's kernels directly. Interleaved rounds (each variant once per round), medians.

    python benchmarks/dropin_vs_torch.py [--rounds 11] [--threads 2] [--configs lstm-64-512,...]

Variants per configuration (input size = hidden size, one layer, x requires grad):
  torch.nn        torch.nn module, loss (y * g).sum(), backward
  rnnfast.torch   the same code with the module patched by rnnfast.torch.patch
  dropin+y.bwd    rnnfast.torch with y.backward(g): no loss ops, only the glue around the kernels
  kernels         _core.layer_forward + layer_backward on preallocated numpy buffers (no torch)
The weights do not change between steps, so both rnnfast variants reuse their packed weights.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import rnnfast
import rnnfast.torch as rt
from rnnfast import _core

CONFIGS = {"lstm-64-512": ("lstm", 64, 100, 512), "lstm-32-256": ("lstm", 32, 100, 256),
           "gru-64-512": ("gru", 64, 100, 512)}


def variants(cell, B, T, H):
    torch.manual_seed(0)
    ref = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](H, H)
    ours = rt.patch(copy_of(ref))
    x = torch.randn(T, B, H, requires_grad=True)
    g = torch.randn(T, B, H)

    def torch_step(module):
        def step():
            module.zero_grad(set_to_none=True)
            x.grad = None
            y, _ = module(x)
            (y * g).sum().backward()
        return step

    def glue_step():
        ours.zero_grad(set_to_none=True)
        x.grad = None
        y, _ = ours(x)
        y.backward(g)

    w = [p.detach().numpy() for p in ref.parameters()]
    packed = _core.PackedWeights(cell, *w, True)
    xn, gn = x.detach().numpy().copy(), g.numpy().copy()
    y, dx = np.empty_like(xn), np.empty_like(xn)
    hn, cn, dh0, dc0 = (np.empty((B, H), np.float32) for _ in range(4))
    grads = [np.zeros_like(a) for a in w]
    cache = _core.TrainCache()

    def kernel_step():
        for a in grads:
            a.fill(0.0)
        _core.layer_forward(packed, xn, None, False, None, None, y, 0, hn, cn if cell == "lstm" else None, cache)
        _core.layer_backward(packed, cache, xn, gn, 0, None, None, dx, False, dh0, dc0 if cell == "lstm" else None,
                             *grads)

    return {"torch.nn": torch_step(ref), "rnnfast.torch": torch_step(ours), "dropin+y.bwd": glue_step,
            "kernels": kernel_step}


def copy_of(module):
    import copy
    return copy.deepcopy(module)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=11)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--variants", default="torch.nn,rnnfast.torch,dropin+y.bwd,kernels",
                   help="comma-separated subset (e.g. dropin+y.bwd,kernels for the glue alone)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rnnfast.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {args.threads}, isa {rnnfast.cpu_info()['isa']}, rounds {args.rounds}")
    for name in args.configs.split(","):
        cell, B, T, H = CONFIGS[name]
        steps = {k: v for k, v in variants(cell, B, T, H).items() if k in args.variants.split(",")}
        times = {k: [] for k in steps}
        names = list(steps)
        for r in range(args.rounds + 2):  # two warm-up rounds
            for k in names[r % len(names):] + names[:r % len(names)]:  # each round starts one later
                step = steps[k]
                time.sleep(0.01)  # let the other pool's spinning threads sleep
                t0 = time.perf_counter()
                step()
                if r >= 2:
                    times[k].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        print(f"{name} (B={B} T={T} H={H}): " + ", ".join(f"{k} {v:.1f} ms" for k, v in med.items()))
        ratios = [(a, b) for a, b in (("torch.nn", "rnnfast.torch"), ("dropin+y.bwd", "kernels"),
                                      ("torch.nn", "kernels")) if a in times and b in times]
        print("  " + ";  ".join(f"{a} / {b} = {statistics.median(x / y for x, y in zip(times[a], times[b])):.3f}"
                                for a, b in ratios) + "  (medians of per-round ratios)")


if __name__ == "__main__":
    main()
