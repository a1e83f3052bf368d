"""``rnnfast experiment deep-stack``: 2, 4 and 8-layer LSTM language models with and without
residual connections and layer normalization on the charlm corpus (the Python standard library's
source, characters).

Every run: Embedding -> LSTM(num_layers, residual and layer_norm or not) -> Linear, trained with the same
optimizer, budget and data order on random windows of the training text; reports validation
cross-entropy (nats and bits per character) on the held-out end of the corpus, and the gradient
norm of each layer's parameters early and late in training: without skips the gradient reaching
the bottom layers of a deep stack is smaller than the top layer's, with them it is not.
"""
from __future__ import annotations

import math

import numpy as np

from .. import nn, optim
from ..losses import cross_entropy
from . import _cli
from ._model import grad_norm
from .plotting import save_plot, smoothed

PROG = "rnnfast experiment deep-stack"
FULL = dict(layers=[2, 4, 8], hidden=64, steps=1000, batch_size=32, seeds=1, lr=2e-3, clip=1.0, seq_len=64,
            corpus_chars=1_000_000)
QUICK = dict(layers=[2, 3], hidden=16, steps=20, batch_size=8, seeds=1, lr=2e-3, clip=1.0, seq_len=16,
             corpus_chars=20_000)
EMBEDDING = 32
VAL_FRAC = 0.05
# The stacks compared: name -> (residual, layer_norm).
STACKS = {"plain": (False, False), "residual": (True, False), "layer_norm": (False, True),
          "residual+layer_norm": (True, True)}


class CharLM(nn.Module):
    def __init__(self, vocab: int, hidden: int, layers: int, residual: bool, seed: int, layer_norm: bool = False):
        super().__init__()
        s = np.random.SeedSequence([seed, 5]).generate_state(3)
        self.embedding = nn.Embedding(vocab, EMBEDDING, seed=int(s[0]))
        self.rnn = nn.LSTM(EMBEDDING, hidden, num_layers=layers, batch_first=True, residual=residual,
                           layer_norm=layer_norm, seed=int(s[1]))
        self.head = nn.Linear(hidden, vocab, seed=int(s[2]))
        self._shape = None

    def forward(self, ids):
        y, _ = self.rnn.forward(self.embedding.forward(ids))
        self._shape = y.shape
        B, T, H = y.shape
        return self.head.forward(y.reshape(B * T, H)).reshape(B, T, -1)

    def backward(self, grad):
        B, T, H = self._shape
        dx = self.rnn.backward(self.head.backward(grad.reshape(B * T, -1)).reshape(self._shape))
        self.embedding.backward(dx)

    def layer_grad_norms(self):
        return [grad_norm([p for name, p in self.rnn.named_parameters() if name.endswith(f"_l{k}")])
                for k in range(self.rnn.num_layers)]


def corpus(max_chars: int):
    """(train ids, validation ids, vocabulary size) of the charlm corpus, split at the end."""
    from ..charlm import stdlib_corpus
    text, _ = stdlib_corpus(max_chars)
    text = text[:max_chars]
    chars, ids = np.unique(np.frombuffer(text.encode("utf-32-le"), np.uint32), return_inverse=True)
    cut = int(len(ids) * (1 - VAL_FRAC))
    return ids[:cut].astype(np.int64), ids[cut:].astype(np.int64), len(chars)


def validation_loss(model, val, seq_len: int, batch: int = 64) -> float:
    """Mean cross-entropy (nats/char) over the validation text in non-overlapping windows."""
    n = (len(val) - 1) // seq_len
    x = val[:n * seq_len].reshape(n, seq_len)
    y = val[1:n * seq_len + 1].reshape(n, seq_len)
    model.eval()
    total = 0.0
    try:
        for i in range(0, n, batch):
            with np.errstate(all="ignore"):
                loss, _ = cross_entropy(model.forward(x[i:i + batch]), y[i:i + batch], reduction="sum")
            total += float(loss)
    finally:
        model.train()
    return total / (n * seq_len)


def train_one(args, train, val, vocab, layers, stack, seed):
    residual, layer_norm = STACKS[stack]
    model = CharLM(vocab, args.hidden, layers, residual, seed, layer_norm)
    params = model.parameters()
    opt = optim.Adam(params, lr=args.lr)
    rng = np.random.default_rng([seed, 19])  # the same windows for every configuration of a seed
    losses, norms = [], []
    for _ in range(args.steps):
        starts = rng.integers(0, len(train) - args.seq_len - 1, args.batch_size)
        window = train[starts[:, None] + np.arange(args.seq_len + 1)]
        opt.zero_grad()
        with np.errstate(all="ignore"):
            loss, grad = cross_entropy(model.forward(window[:, :-1]), window[:, 1:])
            model.backward(grad)
        losses.append(float(loss))
        norms.append(model.layer_grad_norms())
        if not math.isfinite(loss):
            break
        if args.clip:
            optim.clip_grad_norm(params, args.clip)
        opt.step()
    return {"val": validation_loss(model, val, args.seq_len), "curve": np.array(losses), "norms": np.array(norms)}


def parser():
    p = _cli.Parser(prog=PROG, epilog=_cli.presets_epilog(FULL, QUICK),
                    description="Train character-level LSTM language models of 2, 4 and 8 layers, with and without "
                                "residual connections and layer normalization, on the charlm corpus; print "
                                "validation loss and per-layer gradient norms.")
    p.add_argument("--layers", type=_cli.int_list, metavar="L,L,...", help=f"stack depths (default {FULL['layers']})")
    p.add_argument("--seq-len", type=int, help=f"characters per training window (default {FULL['seq_len']})")
    p.add_argument("--corpus-chars", type=int, help=f"characters of the corpus used (default {FULL['corpus_chars']})")
    p.add_argument("--stacks", type=lambda v: v.split(","), default=list(STACKS), metavar="S,S,...",
                   help=f"which stacks (default all: {','.join(STACKS)})")
    _cli.add_common(p)
    return p


def options(argv):
    args = parser().parse_args(argv)
    _cli.resolve(args, FULL, QUICK)
    if min(args.layers) < 2 or args.seq_len < 2 or args.corpus_chars < 1000:
        raise _cli.UserError("expected --layers >= 2 each, --seq-len >= 2 and --corpus-chars >= 1000")
    unknown = [s for s in args.stacks if s not in STACKS]
    if unknown or not args.stacks:
        raise _cli.UserError(f"--stacks: expected some of {','.join(STACKS)}, got {','.join(args.stacks)}")
    return args


def run(args) -> dict:
    """{(layers, stack name): [per-seed result dicts]}."""
    train, val, vocab = corpus(args.corpus_chars)
    _cli.begin("deep stacks: character LSTM language models with and without residual connections and layer "
               "normalization", args,
               f"layers={args.layers} seq_len={args.seq_len} corpus={len(train) + len(val)} chars vocab={vocab} "
               f"embedding={EMBEDDING} optimizer=adam")
    clock = _cli.Clock()
    results = {}
    for layers in args.layers:
        for stack in args.stacks:
            runs = results[(layers, stack)] = []
            for seed in range(args.seeds):
                runs.append(train_one(args, train, val, vocab, layers, stack, seed))
            print(f"  {layers} layers {stack:<19} validation loss per seed "
                  f"{[round(r['val'], 3) for r in runs]}  [{clock}]", flush=True)
    return results


def _phase_norms(run, late: bool):
    n = run["norms"]
    k = max(1, len(n) // 10)
    return (n[-k:] if late else n[:k]).mean(axis=0)


def report(args, results) -> None:
    print(f"\nValidation cross-entropy after {args.steps} steps (nats/char, bits/char in brackets; mean ± std over "
          f"{args.seeds} seeds):")
    rows = []
    for layers in args.layers:
        row = [layers]
        for stack in args.stacks:
            v = [r["val"] for r in results[(layers, stack)]]
            row.append(f"{_cli.mean_std(v)} ({np.mean(v) / math.log(2):.3f})")
        rows.append(row)
    print(_cli.table(["layers"] + list(args.stacks), rows))
    print("\nGradient norm of each layer's parameters (before clipping; mean over the first / last 10% of steps, "
          "seed 0); layer 0 is the bottom:")
    rows = []
    for layers in args.layers:
        for stack in args.stacks:
            run = results[(layers, stack)][0]
            for late in (False, True):
                norms = _phase_norms(run, late)
                rows.append([layers, stack, "last 10%" if late else "first 10%",
                             " ".join(f"{v:.3g}" for v in norms), f"{norms[0] / norms[-1]:.3g}"])
    print(_cli.table(["layers", "stack", "steps", "per layer (bottom .. top)", "bottom/top"], rows))


def plot(args, results, path) -> bool:
    def draw(axes):
        for layers in args.layers:
            for stack in args.stacks:
                run = results[(layers, stack)][0]
                style = {"plain": ":", "residual": "-", "layer_norm": "--"}.get(stack, "-.")
                line, = axes[0].plot(*smoothed(run["curve"]), linestyle=style, label=f"{layers} layers {stack}")
                axes[1].plot(np.arange(layers), _phase_norms(run, False), marker="o", linestyle=style,
                             color=line.get_color(), label=f"{layers} {stack}")
        axes[0].set_xlabel("training step")
        axes[0].set_ylabel("training loss (nats/char)")
        axes[0].set_title(f"char LM, hidden {args.hidden} (seed 0)")
        axes[0].legend(fontsize=8)
        axes[1].set_yscale("log")
        axes[1].set_xlabel("layer (0 = bottom)")
        axes[1].set_ylabel("gradient norm, first 10% of steps")
        axes[1].set_title("per-layer gradient norm")
        axes[1].legend(fontsize=8, ncol=2)
    return save_plot(path, draw, ncols=2)


main = _cli.command(PROG, options, run, report, plot, "deep_stack.png")
