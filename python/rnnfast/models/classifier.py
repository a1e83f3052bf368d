"""Many-to-one: a whole sequence -> class scores or regression values.

Embedding (token ids) or numeric features -> RNN/LSTM/GRU (stacked, optionally bidirectional,
one kernel call per layer and direction) -> pooling over the VALID steps -> Dropout -> Linear.

Pooling over a ragged batch (``lengths``):
- 'last': the final state h_n of the top layer. For a bidirectional layer that is the forward
  direction's state at the last valid step and the backward direction's state at step 0 (both
  have then read the whole sequence), concatenated.
- 'mean': the average of the top layer's outputs over steps ``t < length``.
- 'max': the element-wise maximum over steps ``t < length`` (padding never wins).
"""
from __future__ import annotations

import numpy as np

from ..losses import cross_entropy, mse_loss
from ..nn import Dropout, Linear, Module
from ._common import (CELLS, InputEncoder, Saveable, check_choice, check_int, check_labels, check_lengths,
                      check_max_len, check_prob, eval_mode, length_mask, make_rnn, seeds, top_hidden)

__all__ = ["SequenceClassifier"]

POOLINGS = ("last", "mean", "max")
TASKS = ("classification", "regression")


class SequenceClassifier(Saveable, Module):
    """Classify (or regress on) whole sequences.

    Give ``vocab_size`` and ``embedding_dim`` for token ids (B, T), or ``input_size`` for numeric
    features (B, T, input_size). ``num_outputs`` is the number of classes for
    ``task='classification'`` (outputs are logits) or of predicted values for ``'regression'``.
    ``dropout`` applies to the inputs, between stacked layers and before the head. ``max_len``
    (optional) is the longest sequence the model accepts.
    """

    def __init__(self, num_outputs: int, hidden_size: int, *, vocab_size: int | None = None,
                 embedding_dim: int | None = None, input_size: int | None = None, num_layers: int = 1,
                 cell: str = "lstm", bidirectional: bool = False, pooling: str = "last", dropout: float = 0.0,
                 task: str = "classification", max_len: int | None = None, padding_idx: int | None = 0,
                 seed=None):
        super().__init__()
        w = "SequenceClassifier"
        self._config = dict(
            num_outputs=check_int(num_outputs, "num_outputs", 1, w),
            hidden_size=check_int(hidden_size, "hidden_size", 1, w),
            vocab_size=vocab_size, embedding_dim=embedding_dim, input_size=input_size,
            num_layers=check_int(num_layers, "num_layers", 1, w), cell=check_choice(cell, "cell", CELLS, w),
            bidirectional=bool(bidirectional), pooling=check_choice(pooling, "pooling", POOLINGS, w),
            dropout=check_prob(dropout, "dropout", w), task=check_choice(task, "task", TASKS, w),
            max_len=check_int(max_len, "max_len", 1, w, allow_none=True),
            padding_idx=padding_idx if vocab_size is not None else None)
        c = self._config
        s = seeds(seed, 4)
        self.encoder_input = InputEncoder(vocab_size, embedding_dim, input_size, c["padding_idx"], c["dropout"],
                                          s[0], w)
        self.rnn = make_rnn(c["cell"], self.encoder_input.output_size, c["hidden_size"], c["num_layers"],
                            c["dropout"], c["bidirectional"], s[1])
        self.drop = Dropout(c["dropout"], seed=s[2])
        D = 2 if c["bidirectional"] else 1
        self.head = Linear(D * c["hidden_size"], c["num_outputs"], seed=s[3])

    # configuration ------------------------------------------------------------------------
    @property
    def config(self) -> dict:
        """Constructor arguments (without ``seed``): ``SequenceClassifier(**config)`` rebuilds the shape."""
        return dict(self._config)

    @property
    def num_outputs(self) -> int:
        return self._config["num_outputs"]

    @property
    def pooling(self) -> str:
        return self._config["pooling"]

    # forward / backward --------------------------------------------------------------------
    def forward(self, x, lengths=None):
        """``x``: ids (B, T) or features (B, T, F); ``lengths`` (B,) for ragged batches.
        Returns (B, num_outputs) float32: logits for classification, values for regression."""
        return super().forward(x, lengths)

    def _forward(self, x, lengths=None):
        w = "SequenceClassifier.forward"
        B, T = self.encoder_input.shape_of(x)
        lens = check_lengths(lengths, B, T, w)
        check_max_len(T, lens, self._config["max_len"], w)
        inp, c_in = self.encoder_input.forward_ctx(x)
        (out, state), c_rnn = self.rnn.forward_ctx(inp, None, lens)
        h_n = state[0] if isinstance(state, tuple) else state
        mask = length_mask(lens, T)
        pooled, argmax = self._pool(out, h_n, lens, mask)
        dropped, c_drop = self.drop.forward_ctx(pooled)
        y, c_head = self.head.forward_ctx(dropped)
        saved = (lens, mask, argmax, out.shape, c_in, c_rnn, c_drop, c_head) if self.saving() else None
        return y, saved

    def _pool(self, out, h_n, lens, mask):
        p = self.pooling
        if p == "last":
            return top_hidden(h_n, self.rnn.num_layers, self.rnn.num_directions), None
        if p == "mean":
            # steps past a sequence's length are zero in the layer's output; the mask keeps that explicit
            return (out * mask[:, :, None]).sum(axis=1) / lens[:, None].astype(np.float32), None
        masked = np.where(mask[:, :, None], out, -np.inf)
        argmax = masked.argmax(axis=1)  # (B, F): the step each feature's maximum comes from
        return np.take_along_axis(out, argmax[:, None, :], axis=1)[:, 0, :], argmax

    def backward(self, grad_output):
        """Accumulates every parameter's gradient; returns the input gradient for numeric input
        (None for token ids)."""
        return super().backward(grad_output)

    def _backward(self, ctx, grad_output):
        lens, mask, argmax, out_shape, c_in, c_rnn, c_drop, c_head = ctx.saved
        g = self.drop.backward_ctx(c_drop, self.head.backward_ctx(c_head, grad_output))
        B, T, F = out_shape
        grad_state = None
        g_out = np.zeros(out_shape, np.float32)
        if self.pooling == "last":
            L, D, H = self.rnn.num_layers, self.rnn.num_directions, self.rnn.hidden_size
            gh = np.zeros((L * D, B, H), np.float32)
            for d in range(D):
                gh[(L - 1) * D + d] = g[:, d * H:(d + 1) * H]
            grad_state = (gh, None) if self.rnn.cell == "lstm" else gh
        elif self.pooling == "mean":
            g_out[:] = (g / lens[:, None].astype(np.float32))[:, None, :]
            g_out *= mask[:, :, None]
        else:
            np.put_along_axis(g_out, argmax[:, None, :], g[:, None, :].astype(np.float32), axis=1)
        g_in = self.rnn.backward_ctx(c_rnn, g_out, grad_state)
        return self.encoder_input.backward_ctx(c_in, g_in)

    # loss and prediction -----------------------------------------------------------------
    def loss(self, output, target):
        """``(loss, grad_output)``: mean cross-entropy against class ids (B,), or mean squared error
        against values (B, num_outputs) (a (B,) target is accepted when num_outputs == 1)."""
        w = "SequenceClassifier.loss"
        if self._config["task"] == "classification":
            t = check_labels(target, self.num_outputs, w)
            if t.shape != (output.shape[0],):
                raise ValueError(f"{w}: target: expected shape ({output.shape[0]},) (one label per sequence), "
                                 f"got {t.shape}")
            return cross_entropy(output, t)
        t = np.asarray(target, dtype=np.float32)
        if t.ndim == 1 and self.num_outputs == 1:
            t = t[:, None]
        if t.shape != output.shape:
            raise ValueError(f"{w}: target: expected shape {output.shape}, got {t.shape}")
        return mse_loss(output, t)

    def train_step(self, x, target, lengths=None):
        """Forward, loss and backward on one batch; returns ``(loss, batch_size)`` (a Trainer step_fn body)."""
        out = self.forward(x, lengths)
        loss, grad = self.loss(out, target)
        self.backward(grad)
        return loss, out.shape[0]

    def predict(self, x, lengths=None, batch_size: int = 256):
        """Class ids (B,) for classification, values (B, num_outputs) for regression (eval mode)."""
        out = self._outputs(x, lengths, batch_size)
        return out.argmax(axis=1) if self._config["task"] == "classification" else out

    def predict_proba(self, x, lengths=None, batch_size: int = 256):
        if self._config["task"] != "classification":
            raise ValueError("SequenceClassifier.predict_proba: only for task='classification'")
        z = self._outputs(x, lengths, batch_size).astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)

    def _outputs(self, x, lengths, batch_size):
        x = np.asarray(x)
        B, T = self.encoder_input.shape_of(x)
        lens = check_lengths(lengths, B, T, "SequenceClassifier.predict")
        outs = []
        with eval_mode(self):
            for s in range(0, B, batch_size):
                lb = lens[s:s + batch_size]
                t = int(lb.max())  # trim the padding this chunk does not need
                outs.append(self.forward(x[s:s + batch_size, :t], lb))
        return np.concatenate(outs, axis=0)

    def extra_repr(self) -> str:
        c = self._config
        return (f"task={c['task']!r}, num_outputs={c['num_outputs']}, cell={c['cell']!r}, "
                f"pooling={c['pooling']!r}, bidirectional={c['bidirectional']}")
