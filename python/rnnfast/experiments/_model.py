"""The many-to-one classifier both experiments train, and its small training loop.

Final hidden state of a one-layer RNN / LSTM / GRU -> Linear -> softmax cross-entropy, trained
on fresh batches of the recall task every step (no data is reused, so there is nothing to
overfit). Deliberately independent of ``rnnfast.train``: it is a dozen lines.
"""
from __future__ import annotations

import math

import numpy as np

from .. import nn, optim
from ..losses import cross_entropy
from . import task

CELLS = ("rnn", "lstm", "gru")
_LAYERS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
_CELL_STEPS = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}


class Classifier(nn.Module):
    """logits = Linear(h_T) for a one-layer recurrent layer over time-major one-hot input."""

    def __init__(self, cell: str, hidden: int, seed: int, lstm_forget_bias: float | None = None):
        super().__init__()
        if cell not in _LAYERS:
            raise ValueError(f"cell: expected one of {CELLS}, got {cell!r}")
        self.cell = cell
        rnn_seed, head_seed = np.random.SeedSequence([seed, 1]).generate_state(2)
        self.rnn = _LAYERS[cell](task.VOCAB, hidden, seed=int(rnn_seed))
        self.head = nn.Linear(hidden, task.NUM_CLASSES, seed=int(head_seed))
        if cell == "lstm" and lstm_forget_bias is not None:
            set_forget_bias(self.rnn, lstm_forget_bias)
        self._out_shape = None

    def forward(self, x):
        out, state = self.rnn.forward(x)
        self._out_shape = out.shape
        h_n = state[0] if self.cell == "lstm" else state
        return self.head.forward(h_n[-1])

    def backward(self, grad_logits):
        grad_h = self.head.backward(grad_logits)[None]  # (1, B, H): gradient of h_n only
        grad_state = (grad_h, None) if self.cell == "lstm" else grad_h
        self.rnn.backward(np.zeros(self._out_shape, np.float32), grad_state)

    def step_cell(self):
        """A cell (RNNCell / LSTMCell / GRUCell) holding a copy of the layer's weights, for per-step backward."""
        cell = _CELL_STEPS[self.cell](task.VOCAB, self.rnn.hidden_size)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).data = getattr(self.rnn, name + "_l0").data
        return cell


def set_forget_bias(lstm, value: float) -> None:
    """Total forget-gate bias b_if + b_hf = value in layer 0 (gate order i, f, g, o)."""
    H = lstm.hidden_size
    for name, v in (("bias_ih_l0", value), ("bias_hh_l0", 0.0)):
        b = getattr(lstm, name).data.copy()
        b[H:2 * H] = v
        getattr(lstm, name).data = b


def grad_norm(params) -> float:
    """Global L2 norm of the gradients (float64 sum; inf or nan when they are).

    Not np.dot: a BLAS dot on a few thousand elements wakes OpenBLAS's thread pool, which then
    competes with the kernels' threads and made these small runs several times slower.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return math.sqrt(sum(float(np.square(p.grad, dtype=np.float64).sum()) for p in params))


def make_optimizer(name: str, params, lr: float):
    if name == "adam":
        return optim.Adam(params, lr=lr)
    if name == "sgd":
        return optim.SGD(params, lr=lr)
    raise ValueError(f"optimizer: expected 'adam' or 'sgd', got {name!r}")


def train(model: Classifier, distance: int, steps: int, batch: int, lr: float, clip: float | None, seed: int,
          optimizer: str = "adam") -> dict:
    """Train in place. Returns per-step losses and gradient norms (before and after clipping).

    Stops at the first non-finite loss or gradient (``diverged``): continuing would only
    propagate NaN. ``clip`` None or 0 turns clipping off.
    """
    rng = np.random.default_rng([seed, 2, distance])
    params = model.parameters()
    opt = make_optimizer(optimizer, params, lr)
    losses, before, after = [], [], []
    diverged = False
    model.train()
    for _ in range(steps):
        x, y = task.make_batch(rng, batch, distance)
        opt.zero_grad()
        with np.errstate(all="ignore"):
            loss, grad = cross_entropy(model.forward(x), y)
            model.backward(grad)
        norm = grad_norm(params)
        losses.append(loss)
        before.append(norm)
        if not (math.isfinite(loss) and math.isfinite(norm)):
            after.append(norm)
            diverged = True
            break
        if clip:
            optim.clip_grad_norm(params, clip)
            after.append(grad_norm(params))
        else:
            after.append(norm)
        opt.step()
    return {"loss": np.array(losses), "grad_norm": np.array(before), "grad_norm_clipped": np.array(after),
            "diverged": diverged}


def accuracy(model: Classifier, x, y) -> float:
    """Test accuracy (eval mode: no activations kept). Non-finite logits count as wrong."""
    model.eval()
    try:
        with np.errstate(all="ignore"):
            logits = model.forward(x)
    finally:
        model.train()
    ok = np.isfinite(logits).all(axis=1) & (logits.argmax(axis=1) == y)
    return float(ok.mean())
