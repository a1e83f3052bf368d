"""One-to-many: generate a sequence from a single input (a class id or a feature vector).

The condition is mapped to the recurrent layers' initial state, h_0 (and c_0 for an LSTM) =
tanh(W c + b) for every layer, and a :class:`LanguageModel` (reused as it is: Embedding ->
RNN/LSTM/GRU -> Dropout -> Linear) continues from there. Training is teacher-forced: the model
reads ``<bos> y`` and predicts ``y <eos>`` in one whole-sequence kernel call per layer.
Generation runs the language model's streaming step path from the conditioned state, token by
token, until ``<eos>``.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..losses import cross_entropy
from ..nn import Embedding, Linear, Module
from ._common import (Saveable, check_int, check_lengths, check_max_len, check_prob, eval_mode, length_mask, seeds,
                      shift_for_teacher_forcing, special_ids)
from .language_model import LanguageModel

__all__ = ["ConditionalGenerator"]


class ConditionalGenerator(Saveable, Module):
    """A language model whose initial state comes from a condition.

    Give ``num_conditions`` for class ids (B,) or ``condition_size`` for feature vectors
    (B, condition_size). The language-model arguments are :class:`LanguageModel`'s. ``bos_id`` /
    ``eos_id`` (or an attached vocabulary, :meth:`set_vocab`) are needed for batches and
    generation. ``max_len`` (optional) bounds training sequences and is the default length of
    generation.
    """

    _vocab_attrs = ("vocab",)

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, *, num_conditions: int | None = None,
                 condition_size: int | None = None, num_layers: int = 1, cell: str = "lstm", dropout: float = 0.0,
                 tie_weights: bool = False, bos_id: int | None = None, eos_id: int | None = None, pad_id: int = 0,
                 max_len: int | None = None, seed=None):
        super().__init__()
        w = "ConditionalGenerator"
        if (num_conditions is None) == (condition_size is None):
            raise ValueError(f"{w}: give either num_conditions (class ids) or condition_size (feature vectors), got "
                             f"num_conditions={num_conditions!r}, condition_size={condition_size!r}")
        V = check_int(vocab_size, "vocab_size", 1, w)
        for name, v in (("bos_id", bos_id), ("eos_id", eos_id), ("pad_id", pad_id)):
            if v is not None and not 0 <= check_int(v, name, 0, w) < V:
                raise ValueError(f"{w}: {name}: expected an id < vocab_size={V}, got {v}")
        s = seeds(seed, 2)
        self.lm = LanguageModel(V, embedding_dim, hidden_size, num_layers=num_layers, cell=cell,
                                dropout=check_prob(dropout, "dropout", w), tie_weights=tie_weights, seed=s[0])
        self._config = dict(vocab_size=V, embedding_dim=embedding_dim, hidden_size=hidden_size,
                            num_conditions=check_int(num_conditions, "num_conditions", 1, w, allow_none=True),
                            condition_size=check_int(condition_size, "condition_size", 1, w, allow_none=True),
                            num_layers=num_layers, cell=cell, dropout=float(dropout), tie_weights=bool(tie_weights),
                            bos_id=bos_id, eos_id=eos_id, pad_id=int(pad_id),
                            max_len=check_int(max_len, "max_len", 1, w, allow_none=True))
        self._lstm = self.lm.is_lstm
        state_size = num_layers * hidden_size * (2 if self._lstm else 1)
        if num_conditions is not None:
            self.condition = Embedding(num_conditions, state_size, seed=s[1])
            self.condition.weight.data = self.condition.weight.data * 0.1  # start with unsaturated tanh
        else:
            self.condition = Linear(condition_size, state_size, seed=s[1])
        self.vocab = None

    @property
    def config(self) -> dict:
        return dict(self._config)

    def set_vocab(self, vocab) -> None:
        """Attach the vocabulary (``rnnfast.text.Vocab`` with <bos>/<eos>); saved with the model."""
        if len(vocab) != self._config["vocab_size"]:
            raise ValueError(f"ConditionalGenerator.set_vocab: vocab has {len(vocab)} tokens, the model expects "
                             f"{self._config['vocab_size']}")
        if vocab.bos_id is None or vocab.eos_id is None:
            raise ValueError("ConditionalGenerator.set_vocab: vocab needs <bos> and <eos> special tokens")
        self.vocab = vocab
        self._config["bos_id"], self._config["eos_id"] = int(vocab.bos_id), int(vocab.eos_id)

    def _specials(self, where):
        return special_ids(self._config, where, "build a vocabulary and attach it with set_vocab(vocab)")

    # condition -> initial state -------------------------------------------------------------
    def _check_condition(self, cond, where):
        c = self._config
        a = np.asarray(cond)
        if c["num_conditions"] is not None:
            if a.dtype.kind not in "iu" or a.ndim != 1:
                raise TypeError(f"{where}: cond: expected integer class ids (B,), got {a.dtype} {a.shape}")
            if a.size and (a.min() < 0 or a.max() >= c["num_conditions"]):
                bad = int(a.min()) if a.min() < 0 else int(a.max())
                raise ValueError(f"{where}: cond: class {bad} is outside the label set [0, {c['num_conditions']})")
        else:
            if a.dtype.kind != "f" or a.ndim != 2 or a.shape[1] != c["condition_size"]:
                raise ValueError(f"{where}: cond: expected float features (B, {c['condition_size']}), got "
                                 f"{a.dtype} {a.shape}")
        if a.shape[0] == 0:
            raise ValueError(f"{where}: cond: empty batch")
        return a

    def initial_state(self, cond):
        """The recurrent state a condition starts from: (L, B, H), or (h, c) for an LSTM."""
        return self._initial_state(cond)[0]

    def _initial_state(self, cond):
        """(state, z, context of the condition layer)."""
        a, c_cond = self.condition.forward_ctx(cond)
        z = np.tanh(a)  # (B, S)
        L, H = self._config["num_layers"], self._config["hidden_size"]
        B = z.shape[0]
        if self._lstm:
            zz = z.reshape(B, 2, L, H)
            return tuple(np.ascontiguousarray(zz[:, i].transpose(1, 0, 2)) for i in (0, 1)), z, c_cond
        return np.ascontiguousarray(z.reshape(B, L, H).transpose(1, 0, 2)), z, c_cond

    # forward / backward ---------------------------------------------------------------------
    def forward(self, cond, ids, lengths=None):
        """Teacher-forced logits (B, T, V) for decoder inputs ``ids`` (<bos> y ...) given ``cond``."""
        return super().forward(cond, ids, lengths)

    def _forward(self, cond, ids, lengths=None):
        where = "ConditionalGenerator.forward"
        cond = self._check_condition(cond, where)
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu" or ids.ndim != 2 or ids.shape[0] != cond.shape[0]:
            raise ValueError(f"{where}: ids: expected integer ids ({cond.shape[0]}, T), got {ids.dtype} {ids.shape}")
        lens = check_lengths(lengths, ids.shape[0], ids.shape[1], where)
        check_max_len(ids.shape[1], lens, self._config["max_len"], where, "ids")
        state, z, c_cond = self._initial_state(cond)
        (logits, _), c_lm = self.lm.forward_ctx(ids, state, lens)
        return logits, ((z, c_cond, c_lm) if self.saving() else None)

    def backward(self, grad_logits):
        """Accumulates the gradients; returns the gradient of feature conditions (None for class ids)."""
        return super().backward(grad_logits)

    def _backward(self, ctx, grad_logits):
        z, c_cond, c_lm = ctx.saved
        self.lm.backward_ctx(c_lm, grad_logits)
        gs = c_lm.grad_hx
        B = z.shape[0]
        if self._lstm:
            gz = np.stack([gs[0].transpose(1, 0, 2), gs[1].transpose(1, 0, 2)], axis=1).reshape(B, -1)
        else:
            gz = gs.transpose(1, 0, 2).reshape(B, -1)
        return self.condition.backward_ctx(c_cond, gz * (1.0 - z * z))

    # batches and loss -----------------------------------------------------------------------
    def make_batch(self, conds, seqs) -> dict:
        """``cond``, ``ids`` (<bos> y), ``targets`` (y <eos>), ``lengths`` from conditions and id sequences."""
        bos, eos = self._specials("ConditionalGenerator.make_batch")
        conds = np.asarray(conds)
        if len(conds) != len(seqs):
            raise ValueError(f"ConditionalGenerator.make_batch: {len(conds)} conditions but {len(seqs)} sequences")
        ids, targets, lengths = shift_for_teacher_forcing(seqs, bos, eos, self._config["pad_id"],
                                                          "ConditionalGenerator.make_batch")
        return {"cond": conds, "ids": ids, "targets": targets, "lengths": lengths}

    def loss(self, logits, targets, lengths=None):
        """``(loss, grad_logits)``: cross-entropy averaged over the valid steps."""
        lg = np.asarray(logits)
        B, T = lg.shape[:2]
        mask = length_mask(check_lengths(lengths, B, T, "ConditionalGenerator.loss"), T)
        t = np.asarray(targets)
        V = self._config["vocab_size"]
        valid = t[mask]
        if t.dtype.kind not in "iu" or t.shape != (B, T):
            raise ValueError(f"ConditionalGenerator.loss: targets: expected integer ids {(B, T)}, "
                             f"got {t.dtype} {t.shape}")
        if valid.min() < 0 or valid.max() >= V:
            bad = int(valid.min()) if valid.min() < 0 else int(valid.max())
            raise ValueError(f"ConditionalGenerator.loss: targets: id {bad} is outside the vocabulary [0, {V})")
        return cross_entropy(lg, np.where(mask, t, 0), mask=mask)

    def train_step(self, batch: dict):
        """Forward, loss, backward on a :meth:`make_batch` dict; returns ``(loss, target tokens)``."""
        logits = self.forward(batch["cond"], batch["ids"], batch["lengths"])
        loss, g = self.loss(logits, batch["targets"], batch["lengths"])
        self.backward(g)
        return loss, int(np.sum(batch["lengths"]))

    # generation -----------------------------------------------------------------------------
    def generate(self, cond, max_len: int | None = None, temperature: float = 1.0, top_k: int | None = None,
                 seed=None, greedy: bool = False) -> list:
        """One sequence per condition (a list of int64 arrays without <bos>/<eos>), sampled from
        softmax(logits / temperature) restricted to the ``top_k`` best tokens, or the argmax at
        every step with ``greedy``. Stops at <eos> or after ``max_len`` tokens."""
        where = "ConditionalGenerator.generate"
        bos, eos = self._specials(where)
        cond = self._check_condition(cond, where)
        max_len = check_int(max_len if max_len is not None else (self._config["max_len"] or 100), "max_len", 1, where)
        if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) \
                or not math.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"{where}: temperature: expected a finite number > 0, got {temperature!r}")
        V = self._config["vocab_size"]
        k = V if top_k is None else min(check_int(top_k, "top_k", 1, where), V)
        rng = np.random.default_rng(seed)
        B = cond.shape[0]
        with eval_mode(self):
            stream = self.lm.rnn.stream(B)
            stream.state = self.initial_state(cond)
            emb = self.lm.embedding.weight.data
            w_t, bias = self.lm.decoder.weight.data.T, self.lm.decoder.bias.data
            token = np.full(B, bos, np.int64)
            out = np.full((B, max_len), eos, np.int64)
            done = np.zeros(B, bool)
            rows = np.arange(B)
            for t in range(max_len):
                z = (stream.step(emb[token]) @ w_t + bias).astype(np.float64)
                z[:, [self._config["pad_id"], bos]] = -np.inf  # never produced
                if greedy:
                    token = z.argmax(axis=1)
                else:
                    if k < V:
                        kth = np.partition(z, V - k, axis=1)[:, V - k][:, None]
                        z = np.where(z >= kth, z, -np.inf)
                    z = (z - z.max(axis=1, keepdims=True)) / temperature
                    c = np.cumsum(np.exp(z), axis=1)
                    u = rng.random(B)[:, None] * c[:, -1:]
                    token = np.minimum((c <= u).sum(axis=1), V - 1)
                    token = np.where(np.isfinite(z[rows, token]), token, z.argmax(axis=1))
                out[:, t] = np.where(done, eos, token)
                done |= token == eos
                if done.all():
                    break
        return [row[:np.argmax(row == eos)] if (row == eos).any() else row.copy() for row in out]

    def generate_text(self, cond, **kwargs) -> list:
        """:meth:`generate`, decoded to token lists with the attached vocabulary."""
        if self.vocab is None:
            raise ValueError("ConditionalGenerator.generate_text: no vocabulary attached; build one from the "
                             "training data and call set_vocab(vocab) first")
        return [self.vocab.decode(s) for s in self.generate(cond, **kwargs)]

    def extra_repr(self) -> str:
        c = self._config
        if c["num_conditions"]:
            return f"num_conditions={c['num_conditions']}"
        return f"condition_size={c['condition_size']}"
