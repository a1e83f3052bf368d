"""``rnnfast experiment long-range``: RNN vs LSTM vs GRU on the recall task at controlled distances.

Every (cell, distance, seed) run trains the same many-to-one classifier (task.py, _model.py)
with the same hidden size, step budget, batch size, optimizer (Adam) and clipping, then reports
accuracy on a fixed held-out set of the same distance. Nothing is tuned per cell or distance.
"""
from __future__ import annotations

import numpy as np

from . import _cli, _model, task
from .plotting import save_plot

PROG = "rnnfast experiment long-range"
FULL = dict(distances=[5, 20, 60, 100], hidden=64, steps=2000, batch_size=32, seeds=3, lr=3e-3, clip=1.0,
            test_size=1000)
QUICK = dict(distances=[5, 20, 60], hidden=32, steps=400, batch_size=32, seeds=2, lr=3e-3, clip=1.0,
             test_size=500)


def parser():
    p = _cli.Parser(prog=PROG, epilog=_cli.presets_epilog(FULL, QUICK), description="Train RNN, LSTM and GRU on a task whose answer is the first token, "
                                           "followed by DISTANCE distractors; print test accuracy per cell and "
                                           "distance (mean ± std over seeds).")
    p.add_argument("--distances", "--seq-lens", type=_cli.int_list, metavar="D,D,...",
                   help=f"distractor counts between the key token and the readout (default {FULL['distances']})")
    p.add_argument("--cells", type=_cli.name_list, metavar="C,C",
                   help="subset of rnn,lstm,gru (default all three)")
    p.add_argument("--test-size", type=int, help=f"held-out sequences per distance (default {FULL['test_size']})")
    _cli.add_common(p)
    return p


def options(argv):
    args = parser().parse_args(argv)
    _cli.resolve(args, FULL, QUICK)
    _cli.check_cells(args, _model.CELLS)
    if min(args.distances) < 0 or args.test_size < 1:
        raise _cli.UserError("--distances must be >= 0 and --test-size >= 1")
    return args


def run(args) -> dict:
    """{(cell, distance): {"acc": [per seed], "loss": [final train loss per seed], "diverged": n}}."""
    _cli.begin("long-range recall: accuracy on the first token after D distractors", args,
                f"distances={args.distances} test={args.test_size}/distance optimizer=adam")
    clock = _cli.Clock()
    results = {}
    for distance in args.distances:
        x_test, y_test = task.test_set(distance, args.test_size)
        for cell in args.cells:
            r = results[(cell, distance)] = {"acc": [], "loss": [], "diverged": 0}
            for seed in range(args.seeds):
                model = _model.Classifier(cell, args.hidden, seed, args.lstm_forget_bias)
                log = _model.train(model, distance, args.steps, args.batch_size, args.lr, args.clip, seed)
                r["acc"].append(_model.accuracy(model, x_test, y_test))
                tail = log["loss"][-max(1, len(log["loss"]) // 10):]  # last 10% of the steps
                r["loss"].append(float(np.mean(tail)))
                r["diverged"] += log["diverged"]
            print(f"  D={distance:<4} {cell:<4} acc per seed {[round(a, 3) for a in r['acc']]}  [{clock}]",
                  flush=True)
    return results


def report(args, results) -> None:
    cells = args.cells
    print(f"\nTest accuracy (mean ± std over {args.seeds} seeds; chance = {task.CHANCE:.3f}):")
    rows = [[d, f"{task.CHANCE:.3f}"] + [_cli.mean_std(results[(c, d)]["acc"]) for c in cells]
            for d in args.distances]
    print(_cli.table(["distance", "chance"] + cells, rows))
    print(f"\nFinal training loss (mean of the last 10% of steps; mean ± std over seeds; "
          f"chance = ln {task.NUM_CLASSES} = {np.log(task.NUM_CLASSES):.3f}):")
    rows = [[d] + [_cli.mean_std(results[(c, d)]["loss"]) for c in cells] for d in args.distances]
    print(_cli.table(["distance"] + cells, rows))
    diverged = {k: v["diverged"] for k, v in results.items() if v["diverged"]}
    print(f"\nRuns stopped on a non-finite loss: {diverged if diverged else 'none'}")


def plot(args, results, path) -> bool:
    def draw(ax):
        for cell in args.cells:
            acc = np.array([results[(cell, d)]["acc"] for d in args.distances])
            std = acc.std(axis=1, ddof=1) if acc.shape[1] > 1 else np.zeros(len(acc))
            ax.errorbar(args.distances, acc.mean(axis=1), yerr=std, marker="o", capsize=3, label=cell.upper())
        ax.axhline(task.CHANCE, color="gray", linestyle="--", label="chance")
        ax.set_xlabel("distance (distractor tokens between the key and the readout)")
        ax.set_ylabel("test accuracy")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"Long-range recall, hidden {args.hidden}, {args.steps} steps, {args.seeds} seeds")
        ax.legend()
    return save_plot(path, draw)


main = _cli.command(PROG, options, run, report, plot, "long_range.png")
