"""A linear-chain conditional random field over per-step emission scores (the "CRF" of BiLSTM-CRF).

For a sequence of length L with emissions E (L, K) and tags y, the score is
    start[y_0] + sum_t E[t, y_t] + sum_{t>=1} transitions[y_{t-1}, y_t] + end[y_{L-1}]
and p(y | E) = exp(score(y)) / Z. The negative log-likelihood uses the forward algorithm for
log Z; its gradient comes from the forward-backward marginals (so no autograd is needed); the
best path comes from Viterbi. Everything is vectorised over the batch in numpy (float64
internally) and respects ragged ``lengths``: steps past a sequence's length are ignored.
Parameter names follow the pytorch-crf package: ``transitions`` (K, K) indexed [from, to],
``start_transitions`` and ``end_transitions`` (K,).
"""
from __future__ import annotations

import numpy as np

from ..nn import Module, Parameter
from ._common import check_int

__all__ = ["CRF"]


def _logsumexp(a, axis):
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(a - m), axis=axis))


class CRF(Module):
    """Linear-chain CRF with ``num_tags`` tags; see the module docstring."""

    def __init__(self, num_tags: int, seed=None):
        super().__init__()
        self.num_tags = check_int(num_tags, "num_tags", 1, "CRF")
        rng = np.random.default_rng(seed)
        K = self.num_tags
        self.transitions = Parameter(rng.uniform(-0.1, 0.1, (K, K)))
        self.start_transitions = Parameter(rng.uniform(-0.1, 0.1, K))
        self.end_transitions = Parameter(rng.uniform(-0.1, 0.1, K))

    def _check(self, emissions, lengths, where):
        e = np.asarray(emissions)
        if e.dtype.kind != "f" or e.ndim != 3 or e.shape[2] != self.num_tags:
            raise ValueError(f"{where}: emissions: expected a float array (B, T, {self.num_tags}), "
                             f"got {e.dtype} {e.shape}")
        B, T, _ = e.shape
        if T == 0 or B == 0:
            raise ValueError(f"{where}: emissions: empty sequences or batch, got shape {e.shape}")
        if lengths is None:
            lens = np.full(B, T, np.int64)
        else:
            lens = np.asarray(lengths)
            if lens.shape != (B,) or lens.dtype.kind not in "iu":
                raise ValueError(f"{where}: lengths: expected {B} integers, got {lens.dtype} {lens.shape}")
            if lens.min() < 1 or lens.max() > T:
                raise ValueError(f"{where}: lengths: expected values in [1, {T}], got {lens.min()}..{lens.max()}")
        return e.astype(np.float64), lens.astype(np.int64)

    def _params(self):
        return (self.transitions.data.astype(np.float64), self.start_transitions.data.astype(np.float64),
                self.end_transitions.data.astype(np.float64))

    def _alpha(self, e, lens, trans, start):
        """Forward variables (T, B, K): log of the summed scores of all prefixes ending in each tag.
        Past a sequence's end they stay at its last valid step's values."""
        B, T, K = e.shape
        alpha = np.empty((T, B, K))
        alpha[0] = start + e[:, 0]
        for t in range(1, T):
            nxt = _logsumexp(alpha[t - 1][:, :, None] + trans[None], axis=1) + e[:, t]
            alpha[t] = np.where((t < lens)[:, None], nxt, alpha[t - 1])
        return alpha

    def log_partition(self, emissions, lengths=None) -> np.ndarray:
        """log Z of each sequence (B,)."""
        e, lens = self._check(emissions, lengths, "CRF.log_partition")
        trans, start, end = self._params()
        alpha = self._alpha(e, lens, trans, start)
        return _logsumexp(alpha[-1] + end, axis=1)

    def score(self, emissions, tags, lengths=None) -> np.ndarray:
        """The unnormalised score of the given tag paths (B,)."""
        e, lens = self._check(emissions, lengths, "CRF.score")
        tags = self._check_tags(tags, e.shape, lens, "CRF.score")
        return self._score(e, tags, lens, *self._params())

    def _score(self, e, tags, lens, trans, start, end):
        B, T, _ = e.shape
        mask = np.arange(T)[None, :] < lens[:, None]
        rows = np.arange(B)
        s = start[tags[:, 0]] + end[tags[rows, lens - 1]]
        s += np.where(mask, np.take_along_axis(e, tags[:, :, None], axis=2)[:, :, 0], 0.0).sum(axis=1)
        if T > 1:
            s += np.where(mask[:, 1:], trans[tags[:, :-1], tags[:, 1:]], 0.0).sum(axis=1)
        return s

    def _check_tags(self, tags, shape, lens, where):
        t = np.asarray(tags)
        if t.dtype.kind not in "iu" or t.shape != shape[:2]:
            raise ValueError(f"{where}: tags: expected integer tags of shape {shape[:2]}, got {t.dtype} {t.shape}")
        mask = np.arange(shape[1])[None, :] < lens[:, None]
        valid = t[mask]
        if valid.min() < 0 or valid.max() >= self.num_tags:
            bad = int(valid.min()) if valid.min() < 0 else int(valid.max())
            raise ValueError(f"{where}: tags: tag {bad} is outside the label set [0, {self.num_tags})")
        return np.where(mask, t, 0).astype(np.int64)  # padding may hold anything; it is never read

    def nll(self, emissions, tags, lengths=None, reduction: str = "mean"):
        """Negative log-likelihood ``log Z - score(tags)``; returns ``(loss, grad_emissions)``.

        Being the output layer, it also ACCUMULATES the gradients of the transition parameters.
        ``reduction``: 'mean' over sequences, 'sum', or 'token_mean' (divided by the number of
        valid steps). ``grad_emissions`` has the emissions' dtype and is zero on padding.
        """
        where = "CRF.nll"
        if reduction not in ("mean", "sum", "token_mean"):
            raise ValueError(f"{where}: reduction: expected 'mean', 'sum' or 'token_mean', got {reduction!r}")
        e, lens = self._check(emissions, lengths, where)
        tags = self._check_tags(tags, e.shape, lens, where)
        trans, start, end = self._params()
        B, T, K = e.shape
        alpha = self._alpha(e, lens, trans, start)
        log_z = _logsumexp(alpha[-1] + end, axis=1)
        gold = self._score(e, tags, lens, trans, start, end)
        scale = {"mean": 1.0 / B, "sum": 1.0, "token_mean": 1.0 / float(lens.sum())}[reduction]
        loss = float((log_z - gold).sum() * scale)

        # backward variables: beta[t, i] = log sum of the scores of the suffixes after tag i at t
        mask = np.arange(T)[None, :] < lens[:, None]
        beta = np.empty((T, B, K))
        beta[T - 1] = end
        for t in range(T - 2, -1, -1):
            nxt = _logsumexp(trans[None] + (e[:, t + 1] + beta[t + 1])[:, None, :], axis=2)
            beta[t] = np.where((t + 1 < lens)[:, None], nxt, end)
        # node marginals p(y_t = k) -> d log Z / d E
        marg = np.exp(alpha + beta - log_z[None, :, None]).transpose(1, 0, 2) * mask[:, :, None]
        rows = np.arange(B)
        onehot = np.zeros((B, T, K))
        np.put_along_axis(onehot, tags[:, :, None], 1.0, axis=2)
        onehot *= mask[:, :, None]
        grad_e = (marg - onehot) * scale
        # edge marginals summed over steps -> d log Z / d transitions
        g_trans = np.zeros((K, K))
        for t in range(1, T):
            live = t < lens
            if not live.any():
                break
            xi = np.exp(alpha[t - 1][live][:, :, None] + trans[None] + (e[live, t] + beta[t][live])[:, None, :]
                        - log_z[live][:, None, None])
            g_trans += xi.sum(axis=0)
        if T > 1:
            pairs = mask[:, 1:]
            np.add.at(g_trans, (tags[:, :-1][pairs], tags[:, 1:][pairs]), -1.0)
        g_start = marg[:, 0].sum(axis=0) - np.bincount(tags[:, 0], minlength=K)
        last = tags[rows, lens - 1]
        g_end = marg[rows, lens - 1].sum(axis=0) - np.bincount(last, minlength=K)
        self.transitions.grad += (g_trans * scale).astype(np.float32)
        self.start_transitions.grad += (g_start * scale).astype(np.float32)
        self.end_transitions.grad += (g_end * scale).astype(np.float32)
        return loss, grad_e.astype(np.asarray(emissions).dtype)

    def decode(self, emissions, lengths=None) -> list:
        """Viterbi: the highest-scoring tag path of each sequence, as a list of int64 arrays
        (each as long as its sequence)."""
        e, lens = self._check(emissions, lengths, "CRF.decode")
        trans, start, end = self._params()
        B, T, K = e.shape
        delta = start + e[:, 0]
        back = np.empty((T, B, K), np.int64)
        back[0] = np.arange(K)
        ident = np.broadcast_to(np.arange(K), (B, K))
        for t in range(1, T):
            cand = delta[:, :, None] + trans[None]          # (B, from, to)
            best = cand.argmax(axis=1)
            nxt = np.take_along_axis(cand, best[:, None, :], axis=1)[:, 0] + e[:, t]
            live = (t < lens)[:, None]
            delta = np.where(live, nxt, delta)
            back[t] = np.where(live, best, ident)           # past the end: pass the tag through
        tag = (delta + end).argmax(axis=1)
        path = np.empty((B, T), np.int64)
        for t in range(T - 1, -1, -1):
            path[:, t] = tag
            tag = back[t, np.arange(B), tag]
        return [path[b, :lens[b]].copy() for b in range(B)]

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}"
