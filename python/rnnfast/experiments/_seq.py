"""The model and training loop of the synthetic benchmarks (adding, copying, agreement).

A one-layer RNN / LSTM / GRU (or IRNN: ReLU RNN with identity recurrent weights and zero biases,
Le, Jaitly & Hinton 2015) over time-major float input, then a Linear on the final hidden state
(``readout="last"``) or on every step (``"all"``). Fresh batches every step: nothing to overfit.
"""
from __future__ import annotations

import math

import numpy as np

from .. import nn, optim
from ._model import grad_norm, set_forget_bias

CELLS = ("rnn", "irnn", "lstm", "gru")


def make_rnn(cell: str, input_size: int, hidden: int, seed: int):
    if cell == "rnn":
        return nn.RNN(input_size, hidden, seed=seed)
    if cell == "irnn":
        rnn = nn.RNN(input_size, hidden, nonlinearity="relu", seed=seed)
        rnn.weight_hh_l0.data = np.eye(hidden, dtype=np.float32)
        rnn.bias_ih_l0.data = np.zeros(hidden, np.float32)
        rnn.bias_hh_l0.data = np.zeros(hidden, np.float32)
        # Le et al. draw W_ih from N(0, 0.001); a small input scale keeps the identity loop stable
        rnn.weight_ih_l0.data = np.random.default_rng(seed).normal(0, 0.001, (hidden, input_size)).astype(np.float32)
        return rnn
    if cell == "lstm":
        return nn.LSTM(input_size, hidden, seed=seed)
    if cell == "gru":
        return nn.GRU(input_size, hidden, seed=seed)
    raise ValueError(f"cell: expected one of {CELLS}, got {cell!r}")


class SeqModel(nn.Module):
    """Recurrent layer -> Linear, on the last step's h (B, O) or on every step (T, B, O)."""

    def __init__(self, cell: str, input_size: int, hidden: int, outputs: int, readout: str, seed: int,
                 lstm_forget_bias: float | None = None):
        super().__init__()
        rnn_seed, head_seed = np.random.SeedSequence([seed, 3]).generate_state(2)
        self.cell, self.readout = cell, readout
        self.rnn = make_rnn(cell, input_size, hidden, int(rnn_seed))
        if cell == "lstm" and lstm_forget_bias is not None:
            set_forget_bias(self.rnn, lstm_forget_bias)
        self.head = nn.Linear(hidden, outputs, seed=int(head_seed))
        self._shape = None

    def forward(self, x, lengths=None):
        """lengths (B,): ragged sequences; the last-step readout is then each one's final state."""
        y, state = self.rnn.forward(x, lengths=lengths)
        self._shape = y.shape
        if self.readout == "all":
            T, B, H = y.shape
            return self.head.forward(y.reshape(T * B, H)).reshape(T, B, -1)
        return self.head.forward((state[0] if self.cell == "lstm" else state)[-1])

    def backward(self, grad):
        if self.readout == "all":
            T, B, _ = self._shape
            self.rnn.backward(self.head.backward(grad.reshape(T * B, -1)).reshape(self._shape))
            return
        g = self.head.backward(grad)[None]
        self.rnn.backward(np.zeros(self._shape, np.float32), (g, None) if self.cell == "lstm" else g)

    def predict(self, x, lengths=None):
        self.eval()
        try:
            with np.errstate(all="ignore"):
                return self.forward(x, lengths)
        finally:
            self.train()


def fit(model: SeqModel, batches, loss_fn, steps: int, lr: float, clip: float, log_every: int = 0, label=""):
    """Adam with gradient-norm clipping on ``next(batches)`` -> (x, target), x an array or a tuple of
    forward's arguments; ``loss_fn(out, target)`` -> (loss, grad). Returns the per-step losses
    (stops at the first non-finite one)."""
    params = model.parameters()
    opt = optim.Adam(params, lr=lr)
    losses = []
    model.train()
    for step in range(steps):
        x, target = next(batches)
        opt.zero_grad()
        with np.errstate(all="ignore"):
            loss, grad = loss_fn(model.forward(*x) if isinstance(x, tuple) else model.forward(x), target)
            model.backward(grad)
        losses.append(float(loss))
        if not (math.isfinite(loss) and math.isfinite(grad_norm(params))):
            break
        if clip:
            optim.clip_grad_norm(params, clip)
        opt.step()
        if log_every and (step + 1) % log_every == 0:
            print(f"    {label} step {step + 1}: loss {np.mean(losses[-log_every:]):.4f}", flush=True)
    return np.array(losses)


def tail_mean(losses, frac: float = 0.1) -> float:
    """Mean of the last ``frac`` of the losses (the end-of-training level)."""
    return float(np.mean(losses[-max(1, int(len(losses) * frac)):]))
