"""Character-level word features (Lample et al. 2016): a bidirectional LSTM reads each word's
characters; its two final states, concatenated, describe the word from its spelling, so a word
never seen in training still gets a useful vector from its prefix and suffix.

All words of a batch go through one kernel call per direction, as one ragged batch of character
sequences (each word its own length; padding words are skipped).
"""
from __future__ import annotations

import numpy as np

from ..nn import LSTM, Embedding, Module
from ._common import check_int, seeds

CHAR_PAD = 0  # character id 0 pads words shorter than the longest one


class CharWordEncoder(Module):
    """chars (B, T, W) int ids (0 = padding after a word's last character) -> (B, T, 2 * hidden_size)
    float32, zero at padding words (t >= lengths[b])."""

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, seed, where: str):
        super().__init__()
        self.where = where
        s = seeds(seed, 2)
        self.vocab_size = check_int(vocab_size, "char_vocab_size", 2, where)
        self.embedding = Embedding(self.vocab_size, check_int(embedding_dim, "char_embedding_dim", 1, where),
                                   padding_idx=CHAR_PAD, seed=s[0])
        self.hidden_size = check_int(hidden_size, "char_hidden_size", 1, where)
        self.rnn = LSTM(embedding_dim, hidden_size, batch_first=True, bidirectional=True, seed=s[1])
        self.output_size = 2 * hidden_size

    def check(self, chars, B: int, T: int) -> np.ndarray:
        c = np.asarray(chars)
        if c.dtype.kind not in "iu":
            raise TypeError(f"{self.where}: chars: expected integer character ids (B, T, W), got dtype {c.dtype}")
        if c.ndim != 3 or c.shape[:2] != (B, T) or c.shape[2] < 1:
            raise ValueError(f"{self.where}: chars: expected shape ({B}, {T}, W) (characters of each word), "
                             f"got {c.shape}")
        if c.size and (c.min() < 0 or c.max() >= self.vocab_size):
            bad = int(c.min()) if c.min() < 0 else int(c.max())
            raise ValueError(f"{self.where}: chars: id {bad} is outside [0, char_vocab_size={self.vocab_size})")
        return c

    def _forward(self, chars, lengths):
        B, T, W = chars.shape
        valid = np.arange(T)[None, :] < lengths[:, None]  # (B, T): real words
        words = chars[valid]                                # (N, W)
        n_chars = np.maximum((words != CHAR_PAD).sum(axis=1), 1).astype(np.int64)
        width = int(n_chars.max())
        emb, c_emb = self.embedding.forward_ctx(words[:, :width])
        (_, (h_n, _)), c_rnn = self.rnn.forward_ctx(emb, None, n_chars)
        feats = np.concatenate([h_n[0], h_n[1]], axis=1)    # forward final state, backward final state
        out = np.zeros((B, T, self.output_size), np.float32)
        out[valid] = feats
        return out, ((valid, emb.shape, c_emb, c_rnn) if self.saving() else None)

    def _backward(self, ctx, grad):
        valid, emb_shape, c_emb, c_rnn = ctx.saved
        g = np.asarray(grad, np.float32)[valid]             # (N, 2H)
        H = self.hidden_size
        g_h = np.ascontiguousarray(np.stack([g[:, :H], g[:, H:]]))
        d_emb = self.rnn.backward_ctx(c_rnn, np.zeros(emb_shape[:2] + (2 * H,), np.float32), (g_h, None))
        self.embedding.backward_ctx(c_emb, d_emb)
        return None


def encode_chars(sentences, char_index: dict, max_word_len: int | None = None, unknown: int = 1) -> np.ndarray:
    """Sentences (lists of word strings) -> character ids (B, T, W), 0-padded; T the longest
    sentence, W the longest word (or ``max_word_len``: longer words keep their first W characters).
    Characters missing from ``char_index`` get ``unknown``."""
    T = max((len(s) for s in sentences), default=0)
    W = max((len(w) for s in sentences for w in s), default=1)
    if max_word_len is not None:
        W = min(W, check_int(max_word_len, "max_word_len", 1, "encode_chars"))
    out = np.zeros((len(sentences), max(T, 1), max(W, 1)), np.int64)
    for b, sentence in enumerate(sentences):
        for t, word in enumerate(sentence):
            ids = [char_index.get(ch, unknown) for ch in word[:W]]
            out[b, t, :len(ids)] = ids
    return out
