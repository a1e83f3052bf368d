"""``rnnfast experiment``: reproducible experiments on why gated cells exist.

    rnnfast experiment long-range [options]   # RNN vs LSTM vs GRU accuracy against dependency distance
    rnnfast experiment gradients [options]    # norm of dL/dh_t against distance; exploding case and clipping
    rnnfast experiment adding [options]       # the adding problem: MSE against always answering 1
    rnnfast experiment copying [options]      # copying memory: cross-entropy against the memoryless baseline
    rnnfast experiment agreement [options]    # number agreement across distractors, by distance bin
    rnnfast experiment deep-stack [options]   # deep LSTM stacks with and without residual, char LM

Each prints its tables and, when matplotlib is installed, writes a PNG plot (``--out DIR``).
"""
from __future__ import annotations

import importlib
import sys

EXPERIMENTS = {
    "long-range": ("rnnfast.experiments.long_range",
                   "RNN vs LSTM vs GRU on a task with a controlled dependency distance"),
    "gradients": ("rnnfast.experiments.gradients", "norm of dL/dh_t per step: vanishing, exploding, clipping"),
    "adding": ("rnnfast.experiments.adding", "the adding problem (T 50-400) against the MSE of answering 1"),
    "copying": ("rnnfast.experiments.copying", "copying memory (delays 50-200) against the memoryless baseline"),
    "agreement": ("rnnfast.experiments.agreement", "number agreement at short / medium / long distances"),
    "deep-stack": ("rnnfast.experiments.deep_stack", "2/4/8-layer LSTMs with and without residual, char LM"),
}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in EXPERIMENTS:
        module = importlib.import_module(EXPERIMENTS[argv[0]][0])
        return int(module.main(argv[1:]) or 0)
    unknown = bool(argv) and argv[0] not in ("-h", "--help")
    out = sys.stderr if unknown else sys.stdout
    print("usage: rnnfast experiment NAME [options]   (NAME --help for the options)\n\nexperiments:", file=out)
    for name, (_, doc) in EXPERIMENTS.items():
        print(f"  {name:<12}{doc}", file=out)
    if unknown:
        print(f"rnnfast experiment: error: unknown experiment {argv[0]!r}", file=sys.stderr)
        return 2
    return 0
