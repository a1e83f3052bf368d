"""``rnnfast experiment copying``: the copying memory task (Arjovsky, Shah & Bengio 2016) at delays T.

The input is 10 symbols drawn from 1..8, then T-1 blanks (0), a delimiter (9) and 10 more blanks
(T + 20 steps, one-hot). The target is blank for the first T + 10 steps and then the 10 symbols in
order, so the model must hold 10 symbols for T steps. A memoryless model can only say "blank" and
then guess uniformly among the 8 symbols: cross-entropy 10 ln 8 / (T + 20) per step, the baseline.
"""
from __future__ import annotations

import math

import numpy as np

from ..losses import cross_entropy
from . import _cli, _seq
from .adding import benchmark_options
from .plotting import save_plot, smoothed

PROG = "rnnfast experiment copying"
SYMBOLS, BLANK, DELIMITER, COPY = 8, 0, 9, 10
CLASSES = 10
FULL = dict(delays=[50, 100, 200], hidden=80, steps=3000, batch_size=32, seeds=1, lr=1e-3, clip=1.0, test_size=500)
QUICK = dict(delays=[10, 20], hidden=16, steps=60, batch_size=16, seeds=1, lr=1e-3, clip=1.0, test_size=100)


def baseline(T: int) -> float:
    return COPY * math.log(SYMBOLS) / (T + 2 * COPY)


def make_batch(rng: np.random.Generator, batch: int, T: int):
    """x (T+20, batch, 10) one-hot float32, time-major; target (T+20, batch) int64."""
    if T < 1:
        raise ValueError(f"T: expected a delay >= 1, got {T}")
    n = T + 2 * COPY
    symbols = rng.integers(1, SYMBOLS + 1, (COPY, batch))
    tokens = np.full((n, batch), BLANK, np.int64)
    tokens[:COPY] = symbols
    tokens[T + COPY - 1] = DELIMITER
    target = np.full((n, batch), BLANK, np.int64)
    target[-COPY:] = symbols
    x = np.zeros((n, batch, CLASSES), np.float32)
    np.put_along_axis(x, tokens[:, :, None], 1.0, axis=2)
    return x, target


def parser():
    p = _cli.Parser(prog=PROG, epilog=_cli.presets_epilog(FULL, QUICK),
                    description="Train tanh RNN, IRNN, LSTM and GRU on the copying memory task; print the test "
                                "cross-entropy per step and the accuracy on the copied symbols against the "
                                "memoryless baseline.")
    p.add_argument("--delays", type=_cli.int_list, metavar="T,T,...", help=f"delays (default {FULL['delays']})")
    p.add_argument("--cells", type=_cli.name_list, metavar="C,C",
                   help=f"subset of {','.join(_seq.CELLS)} (default all)")
    p.add_argument("--test-size", type=int, help=f"held-out sequences per delay (default {FULL['test_size']})")
    _cli.add_common(p)
    return p


def options(argv):
    args = benchmark_options(argv, parser, FULL, QUICK)
    if min(args.delays) < 1:
        raise _cli.UserError(f"--delays: expected delays >= 1, got {args.delays}")
    return args


def run(args) -> dict:
    """{(cell, T): {"ce": [...], "acc": [...], "curve": [...]}} per seed."""
    _cli.begin("copying memory: recall 10 symbols after a delay of T steps", args,
               f"delays={args.delays} test={args.test_size}/delay optimizer=adam")
    clock = _cli.Clock()
    results = {}
    for T in args.delays:
        x_test, y_test = make_batch(np.random.default_rng([6113, T]), args.test_size, T)
        for cell in args.cells:
            r = results[(cell, T)] = {"ce": [], "acc": [], "curve": []}
            for seed in range(args.seeds):
                model = _seq.SeqModel(cell, CLASSES, args.hidden, CLASSES, "all", seed, args.lstm_forget_bias)
                rng = np.random.default_rng([seed, 13, T])
                batches = iter(lambda: make_batch(rng, args.batch_size, T), None)
                curve = _seq.fit(model, batches, cross_entropy, args.steps, args.lr, args.clip)
                logits = model.predict(x_test)
                ce = float(cross_entropy(logits, y_test)[0]) if np.isfinite(logits).all() else math.inf
                acc = float((logits[-COPY:].argmax(axis=2) == y_test[-COPY:]).mean())
                r["ce"].append(ce)
                r["acc"].append(acc)
                r["curve"].append(curve)
            print(f"  T={T:<4} {cell:<4} test CE {[round(c, 4) for c in r['ce']]} copied-symbol accuracy "
                  f"{[round(a, 3) for a in r['acc']]}  [{clock}]", flush=True)
    return results


def report(args, results) -> None:
    cells = args.cells
    print(f"\nTest cross-entropy per step (nats; mean ± std over {args.seeds} seeds) against the memoryless "
          "baseline 10 ln 8 / (T + 20):")
    rows = [[T, f"{baseline(T):.4f}"] + [_cli.mean_std(results[(c, T)]["ce"], 4) for c in cells]
            for T in args.delays]
    print(_cli.table(["T", "baseline"] + cells, rows))
    print(f"\nAccuracy on the 10 copied symbols (chance {1 / SYMBOLS:.3f}; mean ± std over seeds):")
    rows = [[T, f"{1 / SYMBOLS:.3f}"] + [_cli.mean_std(results[(c, T)]["acc"]) for c in cells] for T in args.delays]
    print(_cli.table(["T", "chance"] + cells, rows))


def plot(args, results, path) -> bool:
    def draw(axes):
        for ax, T in zip(np.atleast_1d(axes), args.delays):
            for cell in args.cells:
                ax.plot(*smoothed(results[(cell, T)]["curve"][0]), label=cell.upper())
            ax.axhline(baseline(T), color="gray", linestyle="--", label="memoryless")
            ax.set_title(f"copying, T={T} (seed 0)")
            ax.set_xlabel("training step")
        np.atleast_1d(axes)[0].set_ylabel("training cross-entropy per step")
        np.atleast_1d(axes)[0].legend(fontsize=8)
    return save_plot(path, draw, ncols=len(args.delays), size=(4.0, 3.4))


main = _cli.command(PROG, options, run, report, plot, "copying.png")
