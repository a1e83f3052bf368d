"""Attention over encoder outputs, masked for padding: additive (Bahdanau) and multiplicative (Luong).

score(q, s_j):  additive        v · tanh(W_q q + W_k s_j + b)      (Bahdanau et al., 2015)
                multiplicative  q · (W s_j)                        (Luong et al., 2015, "general")
weights = softmax over the valid source steps j < length (padding gets exactly zero weight);
context = sum_j weights_j s_j.

Usage: ``memory = attn.encode(keys, lengths)`` projects the encoder outputs once (shared by every
decoder step); ``attn.forward(query, memory)`` attends for queries (B, Tq, Hq) (Tq = 1 for one
decoding step). Training forwards keep their contexts like every module (rnnfast.nn.module);
the gradients w.r.t. the keys accumulate in the memory, which is the encoder forward's own
value, and ``backward_memory(memory)`` returns them (and finishes the key projection's gradients).
"""
from __future__ import annotations

import math

import numpy as np

from ..nn import Module, Parameter
from ..nn._checks import private_copy
from ..nn.module import accumulating
from ._common import check_choice, check_int

__all__ = ["Attention", "Memory"]

KINDS = ("additive", "multiplicative")


class Memory:
    """Encoder outputs (B, Ts, Hk), their mask (B, Ts) and projection, plus accumulated gradients."""

    def __init__(self, keys, mask, proj):
        self.keys, self.mask, self.proj = keys, mask, proj
        self.grad_keys = None
        self.grad_proj = None

    def repeat(self, n: int) -> "Memory":
        """Each batch row repeated ``n`` times (beam search: one row per hypothesis)."""
        return Memory(np.repeat(self.keys, n, axis=0), np.repeat(self.mask, n, axis=0),
                      np.repeat(self.proj, n, axis=0))

    def take(self, rows) -> "Memory":
        return Memory(self.keys[rows], self.mask[rows], self.proj[rows])


class Attention(Module):
    """``kind`` 'additive' or 'multiplicative'; ``query_size`` Hq, ``key_size`` Hk; the additive
    form's hidden size is ``attention_size`` (default Hq)."""

    def __init__(self, query_size: int, key_size: int, kind: str = "additive", attention_size: int | None = None,
                 seed=None):
        super().__init__()
        w = "Attention"
        self.kind = check_choice(kind, "kind", KINDS, w)
        self.query_size = check_int(query_size, "query_size", 1, w)
        self.key_size = check_int(key_size, "key_size", 1, w)
        rng = np.random.default_rng(seed)
        if kind == "additive":
            A = check_int(attention_size if attention_size is not None else query_size, "attention_size", 1, w)
            self.attention_size = A
            self.query_proj = Parameter(rng.uniform(-1, 1, (A, query_size)) / math.sqrt(query_size))
            self.key_proj = Parameter(rng.uniform(-1, 1, (A, key_size)) / math.sqrt(key_size))
            self.key_bias = Parameter(np.zeros(A))
            self.v = Parameter(rng.uniform(-1, 1, A) / math.sqrt(A))
        else:
            self.attention_size = None
            self.weight = Parameter(rng.uniform(-1, 1, (query_size, key_size)) / math.sqrt(key_size))

    max_pending = 100_000  # a decoder loop keeps one pending forward per step

    # memory ----------------------------------------------------------------------------
    def encode(self, keys, lengths=None) -> Memory:
        k = np.asarray(keys, dtype=np.float32) if np.asarray(keys).dtype != np.float64 else np.asarray(keys)
        k = private_copy(k, keys)  # the memory's backward reads the keys
        if k.ndim != 3 or k.shape[2] != self.key_size:
            raise ValueError(f"Attention.encode: keys: expected shape (B, Ts, {self.key_size}), got {k.shape}")
        B, Ts, _ = k.shape
        if lengths is None:
            mask = np.ones((B, Ts), bool)
        else:
            lens = np.asarray(lengths)
            if lens.shape != (B,) or lens.dtype.kind not in "iu" or lens.min() < 1 or lens.max() > Ts:
                raise ValueError(f"Attention.encode: lengths: expected {B} integers in [1, {Ts}], got {lens}")
            mask = np.arange(Ts)[None, :] < lens[:, None]
        if self.kind == "additive":
            proj = k @ self.key_proj.data.T + self.key_bias.data
        else:
            proj = k @ self.weight.data.T  # (B, Ts, Hq): score = q · proj_j
        return Memory(k, mask, proj)

    def backward_memory(self, memory: Memory):
        """Gradient of the keys from every backward since ``encode``; finishes the projection's gradients."""
        g = np.zeros_like(memory.keys) if memory.grad_keys is None else memory.grad_keys
        if memory.grad_proj is not None:
            gp = memory.grad_proj.reshape(-1, memory.grad_proj.shape[-1])
            k2 = memory.keys.reshape(-1, self.key_size)
            with accumulating(*self.parameters()):
                if self.kind == "additive":
                    self.key_proj.grad += (gp.T @ k2).astype(np.float32)
                    self.key_bias.grad += gp.sum(axis=0).astype(np.float32)
                else:
                    self.weight.grad += (gp.T @ k2).astype(np.float32)
            g = g + (gp @ (self.key_proj.data if self.kind == "additive" else self.weight.data)).reshape(g.shape)
        memory.grad_keys = memory.grad_proj = None
        return g

    # attend ----------------------------------------------------------------------------
    def forward(self, query, memory: Memory, keep: bool | None = None):
        """``query`` (B, Tq, Hq) -> ``(context (B, Tq, Hk), weights (B, Tq, Ts))``. ``keep``
        (default: training mode) saves what backward needs."""
        return super().forward(query, memory, keep)

    def _forward(self, query, memory: Memory, keep: bool | None = None):
        q = np.asarray(query)
        if q.ndim != 3 or q.shape[2] != self.query_size or q.shape[0] != memory.keys.shape[0]:
            raise ValueError(f"Attention.forward: query: expected shape ({memory.keys.shape[0]}, Tq, "
                             f"{self.query_size}), got {q.shape}")
        if self.kind == "additive":
            qp = q @ self.query_proj.data.T                       # (B, Tq, A)
            u = np.tanh(qp[:, :, None, :] + memory.proj[:, None, :, :])  # (B, Tq, Ts, A)
            scores = u @ self.v.data
        else:
            u = None
            scores = q @ memory.proj.transpose(0, 2, 1)           # (B, Tq, Ts)
        scores = np.where(memory.mask[:, None, :], scores, -np.inf)
        scores -= scores.max(axis=2, keepdims=True)
        w = np.exp(scores)
        w /= w.sum(axis=2, keepdims=True)
        ctx = w @ memory.keys
        saving = self.saving() if keep is None else keep
        if saving:
            q = private_copy(q, query)
        return (ctx, w), ((q, u, w, memory) if saving else None)

    def backward(self, grad_context, grad_weights=None):
        """Gradient of the query of the newest pending forward; key gradients go to its memory."""
        return super().backward(grad_context, grad_weights)

    def _backward(self, ctx, grad_context, grad_weights=None):
        q, u, w, mem = ctx.saved
        gc = np.asarray(grad_context)
        gw = w.dtype.type(0) if grad_weights is None else np.asarray(grad_weights)
        gw = gw + gc @ mem.keys.transpose(0, 2, 1)                  # (B, Tq, Ts)
        gk = w.transpose(0, 2, 1) @ gc                                 # via the values
        gs = w * (gw - (gw * w).sum(axis=2, keepdims=True))           # softmax backward; 0 on padding
        if self.kind == "additive":
            gpre = gs[..., None] * self.v.data * (1.0 - u * u)         # (B, Tq, Ts, A)
            gqp = gpre.sum(axis=2)
            gproj = gpre.sum(axis=1)
            with accumulating(self.v, self.query_proj):
                self.v.grad += np.einsum("btsa,bts->a", u, gs).astype(np.float32)
                self.query_proj.grad += (gqp.reshape(-1, gqp.shape[-1]).T @ q.reshape(-1, q.shape[-1])).astype(
                    np.float32)
            gq = gqp @ self.query_proj.data
        else:
            gq = gs @ mem.proj
            gproj = gs.transpose(0, 2, 1) @ q
        mem.grad_keys = gk if mem.grad_keys is None else mem.grad_keys + gk
        mem.grad_proj = gproj if mem.grad_proj is None else mem.grad_proj + gproj
        return gq

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, query_size={self.query_size}, key_size={self.key_size}"
