"""A PyTorch character model trained twice in alternation, once with torch.nn.LSTM and once with
rnnfast.torch.LSTM (the same script, one module swapped): losses and time per step side by side.

embedding -> LSTM -> linear over packed variable-length batches (lines of the Python standard
library, one sample per line), next-character cross entropy, Adam, gradient clipping.

    python examples/torch_dropin_lm.py [--steps 40] [--hidden 512] [--batch 64] [--threads 2]
"""
import argparse
import statistics
import time

import numpy as np
import torch
from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence

import rnnfast
import rnnfast.torch
from rnnfast.charlm import stdlib_corpus


class CharModel(torch.nn.Module):
    def __init__(self, vocab, embed, hidden, layers, dropout, lstm=torch.nn.LSTM):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, embed)
        self.rnn = lstm(embed, hidden, num_layers=layers, dropout=dropout)
        self.head = torch.nn.Linear(hidden, vocab)

    def loss(self, lines):
        """lines: list of int64 tensors (length >= 2): predict each next character."""
        inputs = pack_sequence([s[:-1] for s in lines], enforce_sorted=False)
        targets = pack_sequence([s[1:] for s in lines], enforce_sorted=False)
        out, _ = self.rnn(inputs._replace(data=self.embed(inputs.data)))
        return torch.nn.functional.cross_entropy(self.head(out.data), targets.data)


def corpus_lines(max_len):
    text, _ = stdlib_corpus()
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    lines = [line.rstrip()[:max_len + 1] for line in text.splitlines()]
    lines = [torch.tensor([index[c] for c in line]) for line in lines if len(line) >= 2]
    return lines, len(vocab)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--max-len", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rnnfast.set_num_threads(args.threads)
    lines, vocab = corpus_lines(args.max_len)
    models = {}
    for name in ("torch.nn", "rnnfast.torch"):
        torch.manual_seed(0)  # the same initial weights for both
        model = CharModel(vocab, args.embed, args.hidden, args.layers, args.dropout)
        if name == "rnnfast.torch":
            rnnfast.torch.patch(model)  # the one-line change
        models[name] = (model, torch.optim.Adam(model.parameters(), lr=2e-3))
    rng = np.random.default_rng(0)
    losses = {k: [] for k in models}
    times = {k: [] for k in models}
    for step in range(args.steps + 2):  # two warm-up steps are not timed
        batch = [lines[i] for i in rng.choice(len(lines), args.batch, replace=False)]
        rng_state = torch.get_rng_state()
        order = list(models) if step % 2 == 0 else list(models)[::-1]
        for name in order:
            model, opt = models[name]
            torch.set_rng_state(rng_state)  # the same dropout masks for both
            time.sleep(0.01)
            t0 = time.perf_counter()
            opt.zero_grad()
            loss = model.loss(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            elapsed = time.perf_counter() - t0
            if step >= 2:
                times[name].append(elapsed)
            losses[name].append(loss.item())
        if step % 10 == 0 or step == args.steps + 1:
            print(f"step {step:4d}  " + "  ".join(f"{k} loss {v[-1]:.4f}" for k, v in losses.items()))
    diff = max(abs(a - b) for a, b in zip(*losses.values()))
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    ratio = statistics.median(a / b for a, b in zip(times["torch.nn"], times["rnnfast.torch"]))
    print(f"largest loss difference over {args.steps + 2} steps: {diff:.2e}")
    print("median time per step: " + ", ".join(f"{k} {v:.1f} ms" for k, v in med.items())
          + f"; torch.nn / rnnfast.torch = {ratio:.2f}x (median of per-step ratios)")


if __name__ == "__main__":
    main()
