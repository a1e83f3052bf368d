"""Write exported models, their inputs and Python's outputs for the C API tests (check_outputs.c,
check_errors.c). Usage: python make_fixtures.py DIR

DIR/cases.txt has one line per case: ``name T B S SB`` (forward over T steps of B sequences with
ragged lengths; S stream steps of SB sequences, S = 0 when the model cannot stream). Per case:
name.rnnfast (the model), name.x (T, B, features) float32 or (T, B) int32 ids, name.lengths (B)
int32, name.y (Python's forward), name.sx / name.sy (stream inputs and outputs per step),
name.state (the stream state after S steps: h then c). All little-endian, time-major.
Also bad files for the error tests: garbage.bin, checkpoint.safetensors, future.rnnfast,
truncated.rnnfast, badshape.rnnfast.
"""
import os
import sys

import numpy as np

import rnnfast
from rnnfast import nn
from rnnfast.models import LanguageModel, SequenceClassifier


def flat_state(state):
    return np.concatenate([s.ravel() for s in state]) if isinstance(state, tuple) else state.ravel()


def write(out, name, module, kind, T, B, S, SB, rng, features=None, vocab=None, weights="float32"):
    module.eval()
    (module if kind == "rnn" else module.rnn).set_inference_weights(weights)
    rnnfast.export(module, os.path.join(out, name + ".rnnfast"))
    lengths = rng.integers(1, T + 1, B).astype(np.int32)
    lengths[0] = T
    if vocab:
        x = rng.integers(0, vocab, (T, B)).astype(np.int32)
        sx = rng.integers(0, vocab, (S, SB)).astype(np.int32)
    else:
        x = rng.standard_normal((T, B, features)).astype(np.float32)
        sx = rng.standard_normal((S, SB, features)).astype(np.float32)
    if kind == "rnn":
        y = module(x, lengths=lengths)[0]
    elif kind == "lm":
        y = module(x.T, None, lengths)[0].transpose(1, 0, 2)
    else:
        y = module(x.T if vocab else x.transpose(1, 0, 2), lengths)
    ys, state = [], np.zeros(0, np.float32)
    if S:
        rnn = module if kind == "rnn" else module.rnn
        stream = rnn.stream(SB)
        for t in range(S):
            if kind == "rnn":
                ys.append(stream.step(sx[t]).copy())
            else:
                h = stream.step(module.embedding.weight.data[sx[t]])
                ys.append(module.decoder(h))
        state = flat_state(stream.state)
    arrays = dict(x=x, lengths=lengths, y=np.ascontiguousarray(y, np.float32), sx=sx,
                  sy=np.asarray(ys, np.float32), state=np.asarray(state, np.float32))
    for ext, a in arrays.items():
        np.ascontiguousarray(a).tofile(os.path.join(out, f"{name}.{ext}"))
    return f"{name} {T} {B} {S} {SB}\n"


def bad_files(out, good):
    from safetensors.numpy import save_file
    from rnnfast.checkpoint import save_checkpoint
    from rnnfast.deploy import read

    with open(os.path.join(out, "garbage.bin"), "wb") as f:
        header = b'{"a": nope}'
        f.write(len(header).to_bytes(8, "little") + header)
    save_checkpoint(os.path.join(out, "checkpoint.safetensors"), nn.GRU(3, 4, seed=0))
    meta, arrays = read(good)
    save_file(arrays, os.path.join(out, "future.rnnfast"), metadata=dict(meta, format_version="99"))
    arrays_bad = dict(arrays)
    arrays_bad["rnn.weight_hh_l0"] = arrays["rnn.weight_hh_l0"][:, :-1].copy()
    save_file(arrays_bad, os.path.join(out, "badshape.rnnfast"), metadata=meta)
    data = open(good, "rb").read()
    with open(os.path.join(out, "truncated.rnnfast"), "wb") as f:
        f.write(data[:-64])


def main(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = [
        write(out, "lstm2", nn.LSTM(5, 7, num_layers=2, seed=1), "rnn", 6, 3, 5, 2, rng, features=5),
        write(out, "gru_bi", nn.GRU(5, 6, num_layers=2, bidirectional=True, seed=2), "rnn", 7, 4, 0, 1, rng,
              features=5),
        write(out, "rnn_relu", nn.RNN(4, 19, nonlinearity="relu", seed=3), "rnn", 5, 2, 4, 3, rng, features=4),
        write(out, "lstm256", nn.LSTM(64, 256, seed=4), "rnn", 12, 4, 6, 4, rng, features=64),
        write(out, "lm_lstm", LanguageModel(12, 8, 16, num_layers=2, seed=5), "lm", 9, 3, 8, 2, rng, vocab=12),
        write(out, "lm_gru", LanguageModel(9, 5, 11, num_layers=1, cell="gru", seed=6), "lm", 4, 2, 3, 1, rng,
              vocab=9),
        write(out, "cls_ids_mean", SequenceClassifier(3, 6, vocab_size=10, embedding_dim=4, bidirectional=True,
                                                      pooling="mean", seed=7), "cls", 8, 5, 0, 1, rng, vocab=10),
        write(out, "cls_ids_last", SequenceClassifier(4, 5, vocab_size=10, embedding_dim=4, bidirectional=True,
                                                      num_layers=2, pooling="last", seed=8), "cls", 6, 3, 0, 1, rng,
              vocab=10),
        write(out, "cls_feat_max", SequenceClassifier(2, 7, input_size=3, cell="gru", num_layers=2, pooling="max",
                                                      seed=9), "cls", 5, 4, 0, 1, rng, features=3),
        # the cell variants (format version 2); a reverse-only stack refuses streams
        write(out, "lstm_peephole", nn.LSTM(5, 9, num_layers=2, peepholes=True, seed=11), "rnn", 6, 3, 5, 2, rng,
              features=5),
        write(out, "gru_reset_before", nn.GRU(5, 20, num_layers=2, linear_before_reset=False, seed=12), "rnn", 7, 4,
              5, 3, rng, features=5),
        write(out, "lstm_reverse", nn.LSTM(5, 6, num_layers=2, direction="reverse", peepholes=True, seed=13), "rnn",
              6, 3, 0, 1, rng, features=5),
        write(out, "lstm3_residual", nn.LSTM(5, 6, num_layers=3, residual=True, seed=11), "rnn", 6, 3, 5, 2, rng,
              features=5),
        write(out, "gru_bi_residual", nn.GRU(4, 5, num_layers=2, bidirectional=True, residual=True, seed=12), "rnn",
              5, 3, 0, 1, rng, features=4),
        # reduced precision (names q_*: the C test allows one quantum of difference across ISAs)
        write(out, "q_lstm_int8", nn.LSTM(6, 20, num_layers=2, seed=11), "rnn", 5, 3, 4, 2, rng, features=6,
              weights="int8"),
        write(out, "q_lm_gru_bf16", LanguageModel(9, 5, 11, num_layers=1, cell="gru", seed=12), "lm", 4, 2, 3, 1, rng,
              vocab=9, weights="bfloat16"),
    ]
    with open(os.path.join(out, "cases.txt"), "w") as f:
        f.writelines(lines)
    bad_files(out, os.path.join(out, "lstm2.rnnfast"))
    # the generation example's model: a tiny char LM with its vocabulary
    from rnnfast.text import Vocab
    text = "hello world, hello c api. " * 4
    vocab = Vocab.build(text)
    lm = train_briefly(LanguageModel(len(vocab.itos), 8, 32, num_layers=2, seed=10), vocab.encode(text))
    rnnfast.export(lm, os.path.join(out, "charlm.rnnfast"), vocab=vocab)
    with open(os.path.join(out, "charlm.greedy"), "w", encoding="utf-8", newline="") as f:
        f.write(greedy_text(lm.eval(), vocab, "hel", 40))


def train_briefly(lm, ids):
    """A few Adam steps on the text, so that greedy generation is not one repeated character."""
    from rnnfast.losses import cross_entropy
    from rnnfast.optim import Adam

    ids = np.asarray(ids)[None]
    opt = Adam(lm.parameters(), lr=0.02)
    for _ in range(150):
        opt.zero_grad()
        logits, _ = lm(ids[:, :-1])
        _, grad = cross_entropy(logits, ids[:, 1:])
        lm.backward(grad)
        opt.step()
    return lm


def greedy_text(lm, vocab, prime, length):
    """What `generate charlm.rnnfast --greedy --prime PRIME --length N` prints: argmax each step."""
    stream = lm.rnn.stream(1)
    out = prime
    for tok in vocab.encode(prime):
        logits = lm.decoder(stream.step(lm.embedding.weight.data[[tok]]))
    for _ in range(length):
        tok = int(np.argmax(logits[0]))
        out += vocab.itos[tok]
        logits = lm.decoder(stream.step(lm.embedding.weight.data[[tok]]))
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python make_fixtures.py DIR")
    main(sys.argv[1])
