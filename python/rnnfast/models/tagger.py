"""Many-to-many, aligned: one label per step (part-of-speech tags, named-entity BIO/BIOES tags).

Embedding (ids) or numeric features -> RNN/LSTM/GRU (bidirectional by default, one kernel call
per layer and direction for the whole batch) -> Dropout -> Linear to per-step tag scores
("emissions"), then either a per-step softmax (cross-entropy) or a linear-chain CRF (BiLSTM-CRF:
forward-algorithm loss, Viterbi decoding). Padding steps never enter the loss or the decoding.
With ``char_vocab_size`` each word's vector also gets a character BiLSTM's reading of its
spelling (Lample et al. 2016; char_words.py), which is what tags words unseen in training.
"""
from __future__ import annotations

import numpy as np

from ..losses import cross_entropy
from ..nn import Dropout, Linear, Module
from ._common import (CELLS, InputEncoder, Saveable, check_choice, check_int, check_lengths, check_max_len,
                      check_prob, eval_mode, length_mask, make_rnn, seeds)
from .char_words import CharWordEncoder, encode_chars
from .crf import CRF

__all__ = ["SequenceTagger", "encode_chars"]


class SequenceTagger(Saveable, Module):
    """Predict a tag for every step of a sequence.

    Inputs as in :class:`SequenceClassifier` (``vocab_size``/``embedding_dim`` for ids or
    ``input_size`` for features). ``crf=True`` adds a CRF output layer. ``tag_names`` (optional)
    names the ``num_tags`` tags, e.g. ``['O', 'B-PER', 'I-PER', ...]``, for :meth:`encode_tags` /
    :meth:`tag_text` and the entity metrics.

    ``char_vocab_size`` (optional) adds character-level word features: the character ids of every
    word, ``chars`` (B, T, W) (0 pads a word after its last character; :func:`encode_chars` builds
    them), go through an embedding of ``char_embedding_dim`` and a BiLSTM of ``char_hidden_size``
    per direction; its two final states are concatenated with the word's embedding. ``forward``,
    ``train_step`` and ``decode`` then take ``chars=``.
    """

    def __init__(self, num_tags: int, hidden_size: int, *, vocab_size: int | None = None,
                 embedding_dim: int | None = None, input_size: int | None = None, num_layers: int = 1,
                 cell: str = "lstm", bidirectional: bool = True, dropout: float = 0.0, crf: bool = False,
                 max_len: int | None = None, padding_idx: int | None = 0, tag_names=None, seed=None,
                 char_vocab_size: int | None = None, char_embedding_dim: int = 25, char_hidden_size: int = 25):
        super().__init__()
        w = "SequenceTagger"
        num_tags = check_int(num_tags, "num_tags", 1, w)
        if tag_names is not None:
            tag_names = [str(t) for t in tag_names]
            if len(tag_names) != num_tags or len(set(tag_names)) != num_tags:
                raise ValueError(f"{w}: tag_names: expected {num_tags} distinct names, got {tag_names}")
        self._config = dict(
            num_tags=num_tags, hidden_size=check_int(hidden_size, "hidden_size", 1, w),
            vocab_size=vocab_size, embedding_dim=embedding_dim, input_size=input_size,
            num_layers=check_int(num_layers, "num_layers", 1, w), cell=check_choice(cell, "cell", CELLS, w),
            bidirectional=bool(bidirectional), dropout=check_prob(dropout, "dropout", w), crf=bool(crf),
            max_len=check_int(max_len, "max_len", 1, w, allow_none=True),
            padding_idx=padding_idx if vocab_size is not None else None, tag_names=tag_names)
        if char_vocab_size is not None:  # only then in the config: older checkpoints' configs stay valid
            self._config.update(char_vocab_size=char_vocab_size, char_embedding_dim=char_embedding_dim,
                                char_hidden_size=char_hidden_size)
        c = self._config
        s = seeds(seed, 6)
        self.encoder_input = InputEncoder(vocab_size, embedding_dim, input_size, c["padding_idx"], c["dropout"],
                                          s[0], w)
        self.chars = None if char_vocab_size is None else CharWordEncoder(char_vocab_size, char_embedding_dim,
                                                                          char_hidden_size, s[5], w)
        word_size = self.encoder_input.output_size + (0 if self.chars is None else self.chars.output_size)
        self.rnn = make_rnn(c["cell"], word_size, c["hidden_size"], c["num_layers"],
                            c["dropout"], c["bidirectional"], s[1])
        self.drop = Dropout(c["dropout"], seed=s[2])
        self.emit = Linear((2 if c["bidirectional"] else 1) * c["hidden_size"], num_tags, seed=s[3])
        self.crf = CRF(num_tags, seed=s[4]) if c["crf"] else None
        self._tag_index = None if tag_names is None else {t: i for i, t in enumerate(tag_names)}

    @property
    def config(self) -> dict:
        return dict(self._config)

    @property
    def num_tags(self) -> int:
        return self._config["num_tags"]

    @property
    def tag_names(self):
        return self._config["tag_names"]

    # forward / backward --------------------------------------------------------------------
    def forward(self, x, lengths=None, chars=None):
        """Emission scores (B, T, num_tags) float32 for ids (B, T) or features (B, T, F); ``chars``
        (B, T, W) character ids for a model with character features."""
        return super().forward(x, lengths, chars)

    def _forward(self, x, lengths=None, chars=None):
        w = "SequenceTagger.forward"
        B, T = self.encoder_input.shape_of(x)
        lens = check_lengths(lengths, B, T, w)
        check_max_len(T, lens, self._config["max_len"], w)
        if (chars is None) != (self.chars is None):
            raise ValueError(f"{w}: chars: " + ("this model has character features (char_vocab_size): pass the "
                                                "words' character ids" if chars is None else
                                                "this model has no character features (build it with "
                                                "char_vocab_size=...), got chars"))
        inp, c_in = self.encoder_input.forward_ctx(x)
        c_chars = None
        if self.chars is not None:
            feats, c_chars = self.chars.forward_ctx(self.chars.check(chars, B, T), lens)
            inp = np.concatenate([inp, feats], axis=2)
        (out, _), c_rnn = self.rnn.forward_ctx(inp, None, lens)
        dropped, c_drop = self.drop.forward_ctx(out)
        em, c_emit = self.emit.forward_ctx(dropped)
        return em, ((c_in, c_chars, c_rnn, c_drop, c_emit) if self.saving() else None)

    def backward(self, grad_emissions):
        """Accumulates the gradients; returns the input gradient (None for token ids)."""
        return super().backward(grad_emissions)

    def _backward(self, ctx, grad_emissions):
        c_in, c_chars, c_rnn, c_drop, c_emit = ctx.saved
        g = self.drop.backward_ctx(c_drop, self.emit.backward_ctx(c_emit, grad_emissions))
        g = self.rnn.backward_ctx(c_rnn, g)
        if c_chars is not None:
            E = self.encoder_input.output_size
            self.chars.backward_ctx(c_chars, g[:, :, E:])
            g = np.ascontiguousarray(g[:, :, :E])
        return self.encoder_input.backward_ctx(c_in, g)

    # loss and decoding -----------------------------------------------------------------
    def loss(self, emissions, tags, lengths=None):
        """``(loss, grad_emissions)``. Without a CRF: cross-entropy averaged over the valid steps.
        With one: the CRF negative log-likelihood averaged over the sequences (the CRF's own
        parameter gradients are accumulated here). Padding steps are ignored either way."""
        w = "SequenceTagger.loss"
        e = np.asarray(emissions)
        B, T = e.shape[:2]
        lens = check_lengths(lengths, B, T, w)
        t = np.asarray(tags)
        if t.dtype.kind not in "iu" or t.shape != (B, T):
            raise ValueError(f"{w}: tags: expected integer tags of shape {(B, T)}, got {t.dtype} {t.shape}")
        mask = length_mask(lens, T)
        valid = t[mask]
        if valid.min() < 0 or valid.max() >= self.num_tags:
            bad = int(valid.min()) if valid.min() < 0 else int(valid.max())
            raise ValueError(f"{w}: tags: tag {bad} is outside the label set [0, {self.num_tags})")
        if self.crf is not None:
            return self.crf.nll(e, t, lens)
        return cross_entropy(e, np.where(mask, t, 0), mask=mask)

    def train_step(self, x, tags, lengths=None, chars=None):
        """Forward, loss, backward on one batch; returns ``(loss, number of valid steps)``."""
        em = self.forward(x, lengths, chars)
        loss, g = self.loss(em, tags, lengths)
        self.backward(g)
        return loss, int(check_lengths(lengths, em.shape[0], em.shape[1], "SequenceTagger").sum())

    def decode(self, x, lengths=None, batch_size: int = 256, chars=None) -> list:
        """Best tag ids per sequence (a list of int64 arrays, each of its sequence's length):
        Viterbi with a CRF, the per-step argmax without."""
        x = np.asarray(x)
        B, T = self.encoder_input.shape_of(x)
        lens = check_lengths(lengths, B, T, "SequenceTagger.decode")
        out = []
        with eval_mode(self):
            for s in range(0, B, batch_size):
                lb = lens[s:s + batch_size]
                T_b = int(lb.max())
                em = self.forward(x[s:s + batch_size, :T_b], lb,
                                  None if chars is None else np.asarray(chars)[s:s + batch_size, :T_b])
                if self.crf is not None:
                    out.extend(self.crf.decode(em, lb))
                else:
                    am = em.argmax(axis=2)
                    out.extend(am[b, :n].astype(np.int64) for b, n in enumerate(lb))
        return out

    # tag names ---------------------------------------------------------------------------
    def encode_tags(self, tag_seqs) -> list:
        """Tag-name sequences -> id arrays; an unknown name is an error naming it."""
        if self._tag_index is None:
            raise ValueError("SequenceTagger.encode_tags: the model has no tag_names; pass tag_names= when "
                             "building it")
        out = []
        for i, seq in enumerate(tag_seqs):
            try:
                out.append(np.array([self._tag_index[t] for t in seq], np.int64))
            except KeyError as exc:
                raise ValueError(f"SequenceTagger.encode_tags: sequence {i}: tag {exc.args[0]!r} is outside the "
                                 f"label set {self.tag_names}") from None
        return out

    def decode_tags(self, id_seqs) -> list:
        if self.tag_names is None:
            raise ValueError("SequenceTagger.decode_tags: the model has no tag_names")
        return [[self.tag_names[i] for i in seq] for seq in id_seqs]

    def extra_repr(self) -> str:
        c = self._config
        return (f"num_tags={c['num_tags']}, cell={c['cell']!r}, bidirectional={c['bidirectional']}, crf={c['crf']}" +
                (f", char_vocab_size={c['char_vocab_size']}" if "char_vocab_size" in c else ""))
