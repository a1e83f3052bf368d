"""``rnnfast experiment adding``: the adding problem (Hochreiter & Schmidhuber 1997; Le, Jaitly &
Hinton 2015) at sequence lengths T.

Each step has two inputs: a number drawn uniformly from [0, 1] and a marker. Exactly two steps are
marked, one in the first half and one in the second half of the sequence; the target, read from
the final hidden state, is the sum of the two marked numbers. Always answering 1 (the mean of the
sum) scores an MSE of Var(u1 + u2) = 2/12 = 0.1667: a model beats that only by remembering the first
marked number over up to T steps while it ignores the rest.
"""
from __future__ import annotations

import numpy as np

from ..losses import mse_loss
from . import _cli, _seq
from .plotting import save_plot, smoothed

PROG = "rnnfast experiment adding"
BASELINE = 1.0 / 6.0  # MSE of always predicting 1
SOLVED = 0.1 * BASELINE  # our "solved" mark: a tenth of the baseline's error
FULL = dict(lengths=[50, 100, 200, 400], hidden=64, steps=2000, batch_size=32, seeds=2, lr=1e-3, clip=1.0,
            test_size=1000)
QUICK = dict(lengths=[20, 50], hidden=16, steps=100, batch_size=16, seeds=1, lr=1e-3, clip=1.0, test_size=200)


def make_batch(rng: np.random.Generator, batch: int, T: int):
    """x (T, batch, 2) float32 (value, marker), time-major; target (batch, 1) float32."""
    if T < 2:
        raise ValueError(f"T: expected a sequence length >= 2, got {T}")
    x = np.zeros((T, batch, 2), np.float32)
    x[:, :, 0] = rng.random((T, batch), dtype=np.float32)
    half = T // 2
    first, second = rng.integers(0, half, batch), rng.integers(half, T, batch)
    cols = np.arange(batch)
    x[first, cols, 1] = 1.0
    x[second, cols, 1] = 1.0
    target = (x[first, cols, 0] + x[second, cols, 0])[:, None]
    return x, target


def parser():
    p = _cli.Parser(prog=PROG, epilog=_cli.presets_epilog(FULL, QUICK),
                    description="Train tanh RNN, IRNN, LSTM and GRU on the adding problem; print the test MSE "
                                f"per cell and length against the {BASELINE:.4f} of always answering 1.")
    p.add_argument("--lengths", type=_cli.int_list, metavar="T,T,...",
                   help=f"sequence lengths (default {FULL['lengths']})")
    p.add_argument("--cells", type=_cli.name_list, metavar="C,C",
                   help=f"subset of {','.join(_seq.CELLS)} (default all)")
    p.add_argument("--test-size", type=int, help=f"held-out sequences per length (default {FULL['test_size']})")
    _cli.add_common(p)
    return p


def benchmark_options(argv, parser_fn, full, quick, cells=_seq.CELLS):
    """Options of a synthetic benchmark, resolved and checked (adding, copying, agreement)."""
    args = parser_fn().parse_args(argv)
    _cli.resolve(args, full, quick)
    _cli.check_cells(args, cells)
    if args.test_size < 1:
        raise _cli.UserError(f"--test-size: expected a positive integer, got {args.test_size}")
    return args


def options(argv):
    args = benchmark_options(argv, parser, FULL, QUICK)
    if min(args.lengths) < 2:
        raise _cli.UserError(f"--lengths: expected lengths >= 2, got {args.lengths}")
    return args


def run(args) -> dict:
    """{(cell, T): {"mse": [test MSE per seed], "curve": [training losses per seed]}, ("answer 1", T): that
    constant answer's MSE on the same test set}."""
    _cli.begin("adding problem: test MSE of the sum of the two marked numbers", args,
               f"lengths={args.lengths} test={args.test_size}/length optimizer=adam")
    clock = _cli.Clock()
    results = {}
    for T in args.lengths:
        x_test, y_test = make_batch(np.random.default_rng([7717, T]), args.test_size, T)
        results[("answer 1", T)] = float(np.mean((y_test.astype(np.float64) - 1.0) ** 2))
        for cell in args.cells:
            r = results[(cell, T)] = {"mse": [], "curve": []}
            for seed in range(args.seeds):
                model = _seq.SeqModel(cell, 2, args.hidden, 1, "last", seed, args.lstm_forget_bias)
                rng = np.random.default_rng([seed, 11, T])
                batches = iter(lambda: make_batch(rng, args.batch_size, T), None)
                curve = _seq.fit(model, batches, mse_loss, args.steps, args.lr, args.clip)
                pred = model.predict(x_test)
                mse = float(np.mean((pred.astype(np.float64) - y_test) ** 2)) if np.isfinite(pred).all() else np.inf
                r["mse"].append(mse)
                r["curve"].append(curve)
            print(f"  T={T:<4} {cell:<4} test MSE per seed {[round(m, 4) for m in r['mse']]}  [{clock}]", flush=True)
    return results


def report(args, results) -> None:
    cells = args.cells
    print(f"\nTest MSE (mean ± std over {args.seeds} seeds; always answering 1 scores {BASELINE:.4f} in expectation, "
          "and the 'answer 1' column on this test set):")
    rows = [[T, f"{BASELINE:.4f}", f"{results[('answer 1', T)]:.4f}"] +
            [_cli.mean_std(results[(c, T)]["mse"], 4) for c in cells] for T in args.lengths]
    print(_cli.table(["T", "baseline", "answer 1"] + cells, rows))
    print(f"\nSeeds below a tenth of the baseline (MSE < {SOLVED:.4f}), per cell and length:")
    rows = [[T] + [f"{sum(m < SOLVED for m in results[(c, T)]['mse'])}/{args.seeds}" for c in cells]
            for T in args.lengths]
    print(_cli.table(["T"] + cells, rows))


def plot(args, results, path) -> bool:
    def draw(axes):
        for ax, T in zip(np.atleast_1d(axes), args.lengths):
            for cell in args.cells:
                ax.plot(*smoothed(results[(cell, T)]["curve"][0]), label=cell.upper())
            ax.axhline(BASELINE, color="gray", linestyle="--", label="answer 1")
            ax.set_yscale("log")
            ax.set_title(f"adding, T={T} (seed 0)")
            ax.set_xlabel("training step")
        np.atleast_1d(axes)[0].set_ylabel("training MSE")
        np.atleast_1d(axes)[0].legend(fontsize=8)
    return save_plot(path, draw, ncols=len(args.lengths), size=(4.0, 3.4))


main = _cli.command(PROG, options, run, report, plot, "adding.png")
