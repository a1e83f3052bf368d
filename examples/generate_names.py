"""One-to-many: generate a name from a single class id (ConditionalGenerator).

Data: the 1990 US Census name lists bundled inside the ``names`` package (``pip install names``;
read from the installed package, no network): male first names, female first names and surnames
(the 5000 most frequent, so the classes are of similar size). The class (0 male, 1 female,
2 surname) is mapped to the LSTM's initial state; the model then spells a name character by
character, trained with teacher forcing, and generates through the streaming step path.

Metrics on held-out names: cross-entropy in bits per character (including the end of the
name) with the right class, with a wrong class (the class must matter), and for a character
bigram model per class (a reference measured here; no published number exists for these
lists). Then samples per class and the share of samples that are real names of that class.

    python examples/generate_names.py            # well under a minute on 2 cores
"""
from __future__ import annotations

import os

# rnnfast's kernels do the threading; numpy's small matrix products in the models run faster
# without BLAS threads of their own competing for the same cores (set before numpy loads)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import math
import tempfile
import time
from collections import Counter

import numpy as np

import rnnfast
from rnnfast.checkpoint import load_checkpoint
from rnnfast.data import batches
from rnnfast.models import ConditionalGenerator
from rnnfast.optim import Adam
from rnnfast.text import Vocab
from rnnfast.train import Trainer

CLASSES = ("male first name", "female first name", "surname")


def load_names(surnames):
    try:
        import names
    except ImportError:
        raise SystemExit("this example needs the names package (it bundles the census lists): pip install names")
    root = os.path.dirname(names.__file__)
    out = []
    for k, (fname, limit) in enumerate((("dist.male.first", None), ("dist.female.first", None),
                                        ("dist.all.last", surnames))):
        with open(os.path.join(root, fname)) as f:
            rows = [line.split()[0].lower() for line in f if line.strip()]
        out += [(n, k) for n in rows[:limit]]
    return out


def bigram_bits(train, test, vocab_size, add=0.1):
    """Per-class character bigram model with add-k smoothing: bits per character on ``test``."""
    counts = [Counter() for _ in CLASSES]
    ctx = [Counter() for _ in CLASSES]
    for name, k in train:
        s = ["^"] + list(name) + ["$"]
        for a_, b in zip(s, s[1:]):
            counts[k][a_, b] += 1
            ctx[k][a_] += 1
    bits = n = 0
    for name, k in test:
        s = ["^"] + list(name) + ["$"]
        for a_, b in zip(s, s[1:]):
            bits -= math.log2((counts[k][a_, b] + add) / (ctx[k][a_] + add * vocab_size))
            n += 1
    return bits / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--surnames", type=int, default=5000)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rnnfast.set_num_threads(a.threads)

    data = load_names(a.surnames)
    order = np.random.default_rng(a.seed).permutation(len(data))
    n_val = len(data) // 10
    val = [data[i] for i in order[:n_val]]
    train = [data[i] for i in order[n_val:]]
    vocab = Vocab.build([list(n) for n, _ in train], specials=("<pad>", "<bos>", "<eos>"), unk_token=None)
    print(f"{len(data)} names ({', '.join(f'{sum(k == c for _, k in data)} {n}s' for c, n in enumerate(CLASSES))}); "
          f"{len(train)} train, {len(val)} validation; {len(vocab)} symbols")

    model = ConditionalGenerator(len(vocab), 32, a.hidden, num_conditions=len(CLASSES), cell="lstm",
                                 dropout=0.1, max_len=20, seed=a.seed)
    model.set_vocab(vocab)
    ids = [vocab.encode(list(n)) for n, _ in train]
    cls = np.array([k for _, k in train])

    def step_fn(m, idx, state):
        return m.train_step(m.make_batch(cls[idx], [ids[i] for i in idx]))

    val_batch = model.make_batch(np.array([k for _, k in val]), [vocab.encode(list(n)) for n, _ in val])

    def val_bits(m, cond):
        lg = m(cond, val_batch["ids"], val_batch["lengths"])
        return m.loss(lg, val_batch["targets"], val_batch["lengths"])[0] / math.log(2)

    ckpt = tempfile.mkdtemp(prefix="rnnfast_names_")
    trainer = Trainer(model, Adam(model.parameters(), lr=3e-3), step_fn, batches(len(train), 64, seed=a.seed),
                      eval_fn=lambda m: {"val_bits": val_bits(m, val_batch["cond"])}, monitor="val_bits",
                      epochs=a.epochs, patience=4, grad_clip=5.0, checkpoint_dir=ckpt, progress=True, log_every=100)
    t0 = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - t0
    load_checkpoint(os.path.join(ckpt, "best.ckpt"), model)

    model.eval()
    right = val_bits(model, val_batch["cond"])
    wrong = val_bits(model, (val_batch["cond"] + 1) % len(CLASSES))
    ref = bigram_bits(train, val, len(vocab))
    print(f"\nheld-out bits per character ({len(val)} names, best of {trainer.step} steps, {seconds:.0f}s):")
    print(f"  rnnfast LSTM, right class {right:.3f} | same model, wrong class {wrong:.3f} | "
          f"reference: per-class character bigram model (measured here) {ref:.3f}")
    known = [set(n for n, k in data if k == c) for c in range(len(CLASSES))]
    for c, label in enumerate(CLASSES):
        out = model.generate_text(np.full(200, c), temperature=0.8, seed=a.seed + c, max_len=20)
        words = ["".join(t).capitalize() for t in out]
        real = np.mean([w.lower() in known[c] for w in words])
        print(f"  {label:>17}: {', '.join(words[:a.samples])}  ({real:.0%} of 200 samples are real {label}s)")


if __name__ == "__main__":
    main()
