"""Accuracy of int8 and bfloat16 inference weights (set_inference_weights) against float32.

1. Random models (PyTorch's initialisation): max |y - y_fp32| / max |y_fp32| per cell and format,
   on every kernel path this CPU has (each ISA's fallback, and its dot-product twin).
2. A trained char-level LM (a checkpoint of `rnnfast charlm train`): validation bits per character.
3. A trained classifier: accuracy on held-out sequences of a synthetic majority-vote task (which
   of two tokens occurs more often in a sequence of 60 with distractors; the state must count).

    python benchmarks/reduced_precision_accuracy.py [--charlm CHECKPOINT] [--classifier-seconds 60]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import rnnfast
from rnnfast import _core, nn
from rnnfast.losses import cross_entropy
from rnnfast.models import SequenceClassifier
from rnnfast.optim import Adam, clip_grad_norm

FORMATS = ("bfloat16", "int8")


def paths():
    info = rnnfast.cpu_info()
    dots = info["dot_products"]
    out = [(isa, False) for isa in info["isas_available"]]
    out += [(isa, True) for isa in info["isas_available"]
            if (isa == "avx2" and dots["avx_vnni"]) or (isa == "avx512" and dots["avx512_vnni"])]
    return out


def random_models():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 16, 256)).astype(np.float32)
    rows = []
    for cell, kind in (("lstm", nn.LSTM), ("gru", nn.GRU), ("rnn_tanh", nn.RNN)):
        for isa, dot in paths():
            rnnfast.set_isa(isa)
            _core.set_dot_products(dot)
            m = kind(256, 256, num_layers=2, seed=1).eval()
            y32, _ = m(x)
            errs = {}
            for f in FORMATS:
                y, _ = m.set_inference_weights(f)(x)
                errs[f] = float(np.abs(y - y32).max() / np.abs(y32).max())
                kernel = m._pack_caches[0][0].get(m.cell, m._layer_params[0][0], False, f).kernel
                errs[f + "_kernel"] = kernel
            rows.append((cell, errs))
    _core.set_dot_products(True)
    rnnfast.set_isa(rnnfast.cpu_info()["isas_available"][-1])
    print("## max |y - y_fp32| / max |y_fp32|, 2-layer 256-unit models, T=100 B=16 (x ~ N(0, 1))")
    print("| cell | bfloat16 kernel | bfloat16 | int8 kernel | int8 |")
    print("|---|---|---|---|---|")
    for cell, e in rows:
        print(f"| {cell} | {e['bfloat16_kernel']} | {e['bfloat16']:.2e} | {e['int8_kernel']} | {e['int8']:.2e} |")


def charlm(path):
    from rnnfast import charlm as c

    ckpt, model, vocab = c._load_model(path)
    hp = ckpt.extra["hparams"]
    text, _ = c.stdlib_corpus()  # the corpus `charlm train` without FILEs uses
    if c._fingerprint(text) != ckpt.extra["corpus"]["sha256"]:
        raise SystemExit(f"{path}: trained on another corpus than this Python's standard library")
    _, val = c._split(np.asarray(vocab.encode(text)), hp)
    model.eval()
    print(f"\n## charlm validation loss ({path}: {hp['model']} {hp['layers']}x{hp['hidden']}, step {ckpt.step}, "
          f"{len(val):,} validation characters)")
    print("| weights | kernel | bits/char | change |")
    print("|---|---|---|---|")
    base = None
    for f in ("float32",) + FORMATS:
        model.rnn.set_inference_weights(f)
        bpc = c._evaluate(model, c._scoring_stream(val, hp, None))["val_bpc"]
        base = bpc if base is None else base
        kernel = rnnfast.cpu_info()["weight_kernels"][f]
        print(f"| {f} | {kernel} | {bpc:.4f} | {bpc - base:+.4f} |")


def majority_task(rng, n, T=60):
    """Tokens 0/1 are the votes, 2..9 distractors; the label is the more frequent vote."""
    x = rng.integers(2, 10, (n, T))
    votes = rng.random((n, T)) < 0.3
    x[votes] = rng.integers(0, 2, votes.sum())
    ones, zeros = (x == 1).sum(1), (x == 0).sum(1)
    x[ones == zeros, 0] = 1  # no ties
    return x.astype(np.int64), ((x == 1).sum(1) > (x == 0).sum(1)).astype(np.int64)


def classifier(seconds):
    rng = np.random.default_rng(3)
    model = SequenceClassifier(2, 128, vocab_size=10, embedding_dim=16, pooling="last", seed=4)
    opt = Adam(model.parameters(), lr=3e-3)
    t0, steps = time.time(), 0
    while time.time() - t0 < seconds:
        x, y = majority_task(rng, 64)
        model.train()
        logits = model(x)
        loss, grad = cross_entropy(logits, y)
        model.zero_grad()
        model.backward(grad)
        clip_grad_norm(model.parameters(), 5.0)
        opt.step()
        steps += 1
    x, y = majority_task(np.random.default_rng(99), 5000)
    model.eval()
    print(f"\n## classifier accuracy (majority vote over 60 tokens, LSTM 128, {steps} Adam steps of 64 in "
          f"{seconds:.0f} s; 5000 held-out sequences)")
    print("| weights | kernel | accuracy | change |")
    print("|---|---|---|---|")
    base = None
    for f in ("float32",) + FORMATS:
        model.rnn.set_inference_weights(f)
        acc = float((model(x).argmax(1) == y).mean())
        base = acc if base is None else base
        print(f"| {f} | {rnnfast.cpu_info()['weight_kernels'][f]} | {acc:.4f} | {acc - base:+.4f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--charlm", help="a `rnnfast charlm train` checkpoint (trained on the standard library)")
    p.add_argument("--classifier-seconds", type=float, default=60.0)
    a = p.parse_args()
    rnnfast.set_num_threads(2)
    random_models()
    if a.charlm:
        charlm(a.charlm)
    if a.classifier_seconds > 0:
        classifier(a.classifier_seconds)


if __name__ == "__main__":
    main()
