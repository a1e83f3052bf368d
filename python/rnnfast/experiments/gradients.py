"""``rnnfast experiment gradients``: how ||dL/dh_t|| changes with the distance from the loss.

The loss is the cross-entropy of the recall task (task.py) at the last step only. ∂L/∂h_t is
obtained with the cell API (RNNCell / LSTMCell / GRUCell holding the trained layer's weights):
forward step by step, then backward newest-first, feeding each step's ``grad_hx`` into the
previous step's backward, and recording its norm.

Backward is linear in the incoming gradient, so before each step the carried gradient of every
sequence is rescaled to unit norm and the log of the scale is added up: the recorded log-norms
are exact (the same numbers, in exact arithmetic) yet never underflow float32, which the vanilla
RNN's would after a few dozen steps.
"""
from __future__ import annotations

import math
import os
import sys

import numpy as np

from ..losses import cross_entropy
from . import _cli, _model, task
from .plotting import save_plot

PROG = "rnnfast experiment gradients"
FULL = dict(seq_len=100, hidden=64, steps=2000, batch_size=32, seeds=3, lr=3e-3, clip=1.0, radius=1.5,
            sgd_lr=0.1, probe=64)
QUICK = dict(seq_len=50, hidden=32, steps=200, batch_size=32, seeds=2, lr=3e-3, clip=1.0, radius=1.5,
             sgd_lr=0.1, probe=32)
RUNS = [("sgd", False), ("sgd", True), ("adam", False), ("adam", True)]  # the exploding-RNN training runs


def parser():
    p = _cli.Parser(prog=PROG, epilog=_cli.presets_epilog(FULL, QUICK), description="Norm of dL/dh_t against the distance from the loss for RNN, LSTM and "
                                           "GRU, at initialisation and after training on the long-range task; a "
                                           "vanilla RNN with spectral radius > 1 trained with and without clipping.")
    p.add_argument("--seq-len", "--seq-lens", type=int, metavar="T",
                   help=f"sequence length (the task's distance is T-1; default {FULL['seq_len']})")
    p.add_argument("--train-distance", type=int, metavar="D",
                   help="train on the task at distance D (default T-1, the measured sequence's own task)")
    p.add_argument("--radius", type=float, help=f"spectral radius of W_hh in the exploding case "
                                                f"(default {FULL['radius']})")
    p.add_argument("--sgd-lr", type=float, help=f"learning rate of the SGD runs of the exploding case "
                                                f"(default {FULL['sgd_lr']})")
    p.add_argument("--probe", type=int, help=f"sequences over which the norms are averaged (default {FULL['probe']})")
    _cli.add_common(p)
    return p


def main(argv) -> int:
    try:
        args = parser().parse_args(argv)
        _cli.resolve(args, FULL, QUICK)
        if args.seq_len < 2 or args.probe < 1 or not args.radius > 0 or not args.sgd_lr > 0:
            raise _cli.UserError("expected --seq-len >= 2, --probe >= 1, --radius > 0 and --sgd-lr > 0")
        if args.train_distance is None:
            args.train_distance = args.seq_len - 1
        if args.train_distance < 0:
            raise _cli.UserError(f"--train-distance: expected an int >= 0, got {args.train_distance}")
    except _cli.UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    res = run(args)
    report(args, res)
    if not args.no_plot:
        plot_profiles(args, res, os.path.join(args.out, "gradients.png"))
        plot_exploding(args, res, os.path.join(args.out, "exploding.png"))
    return 0


# measurement -----------------------------------------------------------------------------------------
def hidden_grad_profile(model: _model.Classifier, x, y) -> np.ndarray:
    """log10 ||∂L/∂h_t|| averaged over the batch, indexed by distance d = T-1-t (shape (T,))."""
    cell = model.step_cell()
    lstm = model.cell == "lstm"
    T, B = x.shape[0], x.shape[1]
    state = None
    for t in range(T):
        state = cell.forward(x[t], state)
    head = model.head
    head.train()
    _, grad_logits = cross_entropy(head.forward(state[0] if lstm else state), y)
    gh = head.backward(grad_logits).astype(np.float64)
    gc = np.zeros_like(gh) if lstm else None  # the loss reads h_T only
    head.zero_grad()
    log_scale = np.zeros(B)  # log10 of what each sequence's carried gradient has been divided by
    log_h = np.empty((T, B))
    with np.errstate(divide="ignore"):
        for t in reversed(range(T)):
            nh = np.linalg.norm(gh, axis=1)
            log_h[T - 1 - t] = np.log10(nh) + log_scale
            if t == 0:
                break
            # rescale (h and c together: backward is linear in both) so nothing underflows
            scale = np.hypot(nh, np.linalg.norm(gc, axis=1)) if lstm else nh
            scale = np.where(scale > 0, scale, 1.0)
            log_scale += np.log10(scale)
            gh = (gh / scale[:, None]).astype(np.float32)
            if lstm:
                cell.backward(gh, (gc / scale[:, None]).astype(np.float32))
                gh, gc = (g.astype(np.float64) for g in cell.grad_hx)
            else:
                cell.backward(gh)
                gh = cell.grad_hx.astype(np.float64)
    return log_h.mean(axis=1)


def decay_per_step(log_norm) -> float:
    """Geometric mean over steps of ||g_{t-1}|| / ||g_t||: 10 ** (mean per-step change of log10 norm)."""
    return float(10.0 ** ((log_norm[-1] - log_norm[0]) / (len(log_norm) - 1)))


def set_spectral_radius(model: _model.Classifier, radius: float) -> float:
    """Scale the RNN's W_hh so its largest |eigenvalue| is ``radius``; returns the radius before."""
    p = model.rnn.weight_hh_l0
    before = float(np.max(np.abs(np.linalg.eigvals(p.data.astype(np.float64)))))
    p.data = p.data * np.float32(radius / before)
    return before


# the experiment --------------------------------------------------------------------------------------
def run(args) -> dict:
    T = args.seq_len
    _cli.begin(f"gradient norms: ||dL/dh_t|| over a sequence of {T} steps, loss at the last step", args,
                f"seq_len={T} train_distance={args.train_distance} probe={args.probe} radius={args.radius} "
                f"sgd_lr={args.sgd_lr}")
    clock = _cli.Clock()
    x_probe, y_probe = task.test_set(T - 1, args.probe)
    D = args.train_distance
    x_test, y_test = task.test_set(D, 1000)
    prof = {}   # label -> list over seeds of log-norm arrays (T,)
    acc = {}    # label -> list over seeds
    radius0 = []
    explode = {run: [] for run in RUNS}
    for seed in range(args.seeds):
        for cell in _model.CELLS:
            model = _model.Classifier(cell, args.hidden, seed, args.lstm_forget_bias)
            if cell == "rnn":
                radius0.append(float(np.max(np.abs(np.linalg.eigvals(model.rnn.weight_hh_l0.data.astype(float))))))
            for tag in ("init", "trained"):
                if tag == "trained":
                    log = _model.train(model, D, args.steps, args.batch_size, args.lr, args.clip, seed)
                    acc.setdefault(f"{cell} trained", []).append(_model.accuracy(model, x_test, y_test))
                    acc.setdefault(f"{cell} trained (nan)", []).append(log["diverged"])
                prof.setdefault(f"{cell} {tag}", []).append(hidden_grad_profile(model, x_probe, y_probe))
        model = _model.Classifier("rnn", args.hidden, seed)
        set_spectral_radius(model, args.radius)
        prof.setdefault(f"rnn ρ={args.radius:g} init", []).append(hidden_grad_profile(model, x_probe, y_probe))
        for optimizer, clip in RUNS:
            model = _model.Classifier("rnn", args.hidden, seed)
            set_spectral_radius(model, args.radius)
            lr = args.sgd_lr if optimizer == "sgd" else args.lr
            log = _model.train(model, D, args.steps, args.batch_size, lr, args.clip if clip else None, seed,
                               optimizer=optimizer)
            log["acc"] = _model.accuracy(model, x_test, y_test)
            explode[(optimizer, clip)].append(log)
        print(f"  seed {seed} done [{clock}]", flush=True)
    return {"profiles": prof, "acc": acc, "radius0": radius0, "explode": explode}


# output ----------------------------------------------------------------------------------------------
_TABLE_DISTANCES = (0, 1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000)


def _distances(T):
    """The table's columns: a few round distances, and the longest one, T-1."""
    ds = [d for d in _TABLE_DISTANCES if d < T]
    return ds if ds[-1] == T - 1 else ds + [T - 1]


def report(args, res) -> None:
    T = args.seq_len
    ds = _distances(T)
    prof = res["profiles"]
    print(f"\nlog10 ||dL/dh_t|| at distance d = T-1-t from the loss (mean over {args.probe} probe sequences, "
          f"then over {args.seeds} seeds);")
    print(f"decay/step = geometric mean of ||g_(t-1)|| / ||g_t|| over the {T - 1} steps (mean ± std over seeds); "
          f"< 1 vanishes, > 1 explodes.")
    rows = []
    for label, runs in prof.items():
        a = np.array(runs)
        decay = [decay_per_step(r) for r in runs]
        rows.append([label] + [f"{a[:, d].mean():.2f}" for d in ds] + [_cli.mean_std(decay),
                                                                       " ".join(f"{v:.3f}" for v in decay)])
    print(_cli.table(["model"] + [f"d={d}" for d in ds] + ["decay/step", "per seed"], rows))
    r0 = np.array(res["radius0"])
    print(f"\nSpectral radius of the vanilla RNN's W_hh at its default initialisation (uniform ±1/sqrt(H)): "
          f"{r0.mean():.3f} (seeds: {[round(float(v), 3) for v in r0]})")
    print(f"\nTest accuracy after training at distance {args.train_distance} (chance {task.CHANCE:.3f}; "
          "mean ± std over seeds):")
    print(_cli.table(["cell", "accuracy", "per seed", "non-finite runs"],
                     [[c, _cli.mean_std(res["acc"][f"{c} trained"]),
                       " ".join(f"{v:.3f}" for v in res["acc"][f"{c} trained"]), sum(res["acc"][f"{c} trained (nan)"])]
                      for c in _model.CELLS]))
    print(f"\nExploding case: vanilla RNN with W_hh scaled to spectral radius {args.radius:g}, trained {args.steps} "
          f"steps at distance {args.train_distance} (SGD lr {args.sgd_lr:g}, Adam lr {args.lr:g}; "
          f"clipping at norm {args.clip:g}).")
    print("Gradient norms are over all steps of all seeds; losses and accuracy are mean ± std over seeds.")
    rows = []
    for (optimizer, clip), logs in res["explode"].items():
        before = np.concatenate([g["grad_norm"] for g in logs])
        after = np.concatenate([g["grad_norm_clipped"] for g in logs])
        finite = before[np.isfinite(before)]
        first = [g["loss"][0] for g in logs]
        final = [np.mean(g["loss"][-max(1, len(g["loss"]) // 10):]) for g in logs]
        stopped = [len(g["loss"]) for g in logs if g["diverged"]]
        rows.append([optimizer, f"{args.clip:g}" if clip else "off",
                     f"{np.median(finite):.3g}" if finite.size else "nan", f"{before.max():.3g}",
                     f"{after.max():.3g}", _cli.mean_std(first), _cli.mean_std(final),
                     _cli.mean_std([g["acc"] for g in logs]), " ".join(f"{g['acc']:.3f}" for g in logs),
                     f"{len(stopped)}/{len(logs)}" + (f" (at step {stopped})" if stopped else "")])
    print(_cli.table(["optimizer", "clip", "median norm", "max norm", "max after clip", "first loss",
                      "final loss", "test acc", "per seed", "non-finite"], rows))


def plot_profiles(args, res, path) -> bool:
    def draw(ax):
        styles = {"init": ":", "trained": "-"}
        colors = {"rnn": "C0", "lstm": "C1", "gru": "C2"}
        for label, runs in res["profiles"].items():
            a = np.array(runs).mean(axis=0)
            cell, tag = label.split()[:2]
            if "ρ" in tag:
                ax.plot(a, color="C3", linestyle="--", label=label)
            else:
                ax.plot(a, color=colors[cell], linestyle=styles[tag], label=label)
        ax.set_xlabel("distance from the loss (steps back, T-1-t)")
        ax.set_ylabel("log10 ||dL/dh_t||")
        ax.set_title(f"Gradient norm vs distance, hidden {args.hidden}, T={args.seq_len}, "
                     f"mean of {args.seeds} seeds")
        ax.legend(fontsize=8, ncol=2)
    return save_plot(path, draw)


def plot_exploding(args, res, path) -> bool:
    def draw(axes):
        for (optimizer, clip), logs in res["explode"].items():
            g = logs[0]  # seed 0
            label = f"{optimizer}, clip {'%g' % args.clip if clip else 'off'}"
            steps = np.arange(len(g["grad_norm"]))
            line, = axes[0].plot(steps, g["grad_norm"], label=label, alpha=0.8, linewidth=0.8)
            axes[1].plot(steps, g["loss"], label=label, color=line.get_color(), alpha=0.8, linewidth=0.8)
        axes[0].axhline(args.clip, color="gray", linestyle="--", label=f"clip threshold {args.clip:g}")
        axes[0].set_yscale("log")
        axes[0].set_xlabel("training step")
        axes[0].set_ylabel("gradient norm before clipping")
        axes[0].set_title(f"RNN with spectral radius {args.radius:g} (seed 0)")
        axes[1].axhline(math.log(task.NUM_CLASSES), color="gray", linestyle="--", label="chance loss")
        axes[1].set_xlabel("training step")
        axes[1].set_ylabel("training loss")
        axes[1].set_title(f"Training loss, distance {args.train_distance}")
        for ax in axes:
            ax.legend(fontsize=8)
    return save_plot(path, draw, ncols=2)
