"""``rnnfast experiment agreement``: subject-verb number agreement across distractors, by distance.

A synthetic version of "The cat(s), which ate the fish yesterday, was/were hungry": a sequence
starts with a subject noun, singular or plural; then come D distractor words, among them other
nouns of either number ("attractors", each distractor is one with probability 0.25); then the
readout, where the model must say whether the verb is singular or plural - the number of the
*first* noun, not of the most recent one. Training draws D uniformly from 1..max; the test
reports accuracy in the tutorial's bins: short (D < 10), medium (10-30) and long (D > 50).
Chance is 50 %.
"""
from __future__ import annotations

import numpy as np

from ..losses import cross_entropy
from . import _cli, _seq
from .adding import benchmark_options
from .plotting import save_plot

PROG = "rnnfast experiment agreement"
NOUNS = 4                            # per number: ids 0..3 singular, 4..7 plural
FILLERS = 12                         # ids 8..19: words without number
VOCAB = 2 * NOUNS + FILLERS + 1      # + the readout token
READOUT = VOCAB - 1
ATTRACTOR_P = 0.25
BINS = (("short (<10)", 1, 9), ("medium (10-30)", 10, 30), ("long (>50)", 51, 80))
CLAIMED = {"rnn": (85, 65, 40), "lstm": (87, 82, 78)}  # the tutorial's table, % per bin
FULL = dict(min_distance=1, max_distance=80, hidden=64, steps=3000, batch_size=32, seeds=2, lr=2e-3, clip=1.0,
            test_size=1000)
QUICK = dict(min_distance=1, max_distance=60, hidden=16, steps=60, batch_size=16, seeds=1, lr=2e-3, clip=1.0,
             test_size=60)


def make_batch(rng: np.random.Generator, batch: int, distances):
    """Sequences of the given distances (batch,): x (T, batch, VOCAB) one-hot, zero past each
    sequence's length; labels (batch,) (0 singular, 1 plural); lengths (batch,) int32 = D + 2, so
    the readout is each sequence's last valid step and its final state answers."""
    distances = np.asarray(distances)
    T = int(distances.max()) + 2
    labels = rng.integers(0, 2, batch)
    tokens = np.full((T, batch), -1, np.int64)
    for b, d in enumerate(distances):
        words = 2 * NOUNS + rng.integers(0, FILLERS, d)
        attract = rng.random(d) < ATTRACTOR_P
        words[attract] = rng.integers(0, 2 * NOUNS, attract.sum())
        tokens[0, b] = labels[b] * NOUNS + rng.integers(0, NOUNS)
        tokens[1:d + 1, b] = words
        tokens[d + 1, b] = READOUT
    x = np.zeros((T, batch, VOCAB), np.float32)
    valid = tokens >= 0
    t_idx, b_idx = np.nonzero(valid)
    x[t_idx, b_idx, tokens[valid]] = 1.0
    return x, labels, (distances + 2).astype(np.int32)


def parser():
    p = _cli.Parser(prog=PROG, epilog=_cli.presets_epilog(FULL, QUICK),
                    description="Train RNN, LSTM and GRU on number agreement across D distractor words (D drawn "
                                "from 1..max); print test accuracy for short, medium and long D beside the "
                                "tutorial's claimed numbers.")
    p.add_argument("--min-distance", type=int, help=f"shortest training distance (default {FULL['min_distance']}; "
                                                    "raising it removes the short, easy examples from training)")
    p.add_argument("--max-distance", type=int, help=f"longest training distance (default {FULL['max_distance']})")
    p.add_argument("--cells", type=_cli.name_list, metavar="C,C",
                   help="subset of rnn,lstm,gru (default all)")
    p.add_argument("--test-size", type=int, help=f"held-out sequences per bin (default {FULL['test_size']})")
    _cli.add_common(p)
    return p


def options(argv):
    args = benchmark_options(argv, parser, FULL, QUICK, cells=("rnn", "lstm", "gru"))
    if not 1 <= args.min_distance <= args.max_distance:
        raise _cli.UserError(f"expected 1 <= --min-distance <= --max-distance, got {args.min_distance} and "
                             f"{args.max_distance}")
    return args


def run(args) -> dict:
    """{(cell, bin name): [accuracy per seed]}."""
    _cli.begin("number agreement: accuracy by distance between subject and verb", args,
               f"train_distances={args.min_distance}..{args.max_distance} attractor_p={ATTRACTOR_P} "
               f"test={args.test_size}/bin")
    clock = _cli.Clock()
    tests = {}
    for name, lo, hi in BINS:
        rng = np.random.default_rng([4241, lo])
        tests[name] = make_batch(rng, args.test_size, rng.integers(lo, hi + 1, args.test_size))
    results = {}
    for cell in args.cells:
        for seed in range(args.seeds):
            model = _seq.SeqModel(cell, VOCAB, args.hidden, 2, "last", seed, args.lstm_forget_bias)
            rng = np.random.default_rng([seed, 17])

            def batches():
                while True:
                    x, y, lengths = make_batch(rng, args.batch_size,
                                               rng.integers(args.min_distance, args.max_distance + 1,
                                                            args.batch_size))
                    yield (x, lengths), y

            _seq.fit(model, batches(), cross_entropy, args.steps, args.lr, args.clip)
            accs = []
            for name, _, _ in BINS:
                x, y, lengths = tests[name]
                acc = float((model.predict(x, lengths).argmax(axis=1) == y).mean())
                results.setdefault((cell, name), []).append(acc)
                accs.append(round(acc, 3))
            print(f"  {cell:<4} seed {seed}: accuracy short/medium/long {accs}  [{clock}]", flush=True)
    return results


def report(args, results) -> None:
    print(f"\nTest accuracy % by subject-verb distance (mean ± std over {args.seeds} seeds; chance 50; trained "
          f"on D in {args.min_distance}..{args.max_distance}), beside the tutorial's claimed numbers:")
    rows = []
    for cell in args.cells:
        for i, (name, _, _) in enumerate(BINS):
            acc = 100 * np.asarray(results[(cell, name)])
            claim = CLAIMED.get(cell)
            rows.append([cell, name, _cli.mean_std(acc, 1), f"{claim[i]}" if claim else "—"])
    print(_cli.table(["cell", "distance", "ours", "tutorial"], rows))


def plot(args, results, path) -> bool:
    def draw(ax):
        x = np.arange(len(BINS))
        width = 0.8 / max(1, len(args.cells))
        for i, cell in enumerate(args.cells):
            means = [100 * np.mean(results[(cell, name)]) for name, _, _ in BINS]
            ax.bar(x + i * width, means, width, label=f"{cell.upper()} (ours)")
        for cell, claim in CLAIMED.items():
            ax.plot(x + 0.4 - width / 2, claim, marker="x", linestyle=":", label=f"{cell.upper()} (tutorial)")
        ax.axhline(50, color="gray", linestyle="--", label="chance")
        ax.set_xticks(x + 0.4 - width / 2, [name for name, _, _ in BINS])
        ax.set_ylabel("test accuracy %")
        ax.set_ylim(0, 105)
        ax.set_title(f"Number agreement, hidden {args.hidden}, {args.steps} steps")
        ax.legend(fontsize=8)
    return save_plot(path, draw)


main = _cli.command(PROG, options, run, report, plot, "agreement.png")
