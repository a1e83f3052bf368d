"""A token-level language model: Embedding → RNN/LSTM/GRU → Dropout → Linear over the vocabulary.

Training runs whole sequences through the recurrent kernels (one call per layer); ``generate``
runs the low-latency step path (``rnn.stream()``) with the embedding lookup and the output
projection done in numpy per token. Hidden states are plain arrays, so carrying the final state
of one batch into the next (truncated BPTT) needs no detaching: pass ``state`` back in.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..nn._checks import check_int
from ..nn import GRU, LSTM, RNN, Dropout, Embedding, Linear, Module
from ..nn.module import DropoutRng

__all__ = ["LanguageModel"]

_CELLS = ("rnn", "rnn_tanh", "rnn_relu", "lstm", "gru")


def _int(value, name: str, minimum: int) -> int:
    return check_int(value, name, minimum, "LanguageModel")


class LanguageModel(DropoutRng, Module):
    """Predicts token ``t+1`` from tokens ``<= t``.

    ``cell`` is 'lstm', 'gru', 'rnn' (tanh), 'rnn_tanh' or 'rnn_relu'. ``dropout`` applies
    between stacked recurrent layers and before the output layer. ``tie_weights`` shares the
    embedding matrix with the output layer (needs ``embedding_dim == hidden_size``). ``seed``
    fixes the initial weights and the dropout masks.
    """

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, num_layers: int = 2,
                 cell: str = "lstm", dropout: float = 0.0, tie_weights: bool = False, seed=None):
        super().__init__()
        vocab_size = _int(vocab_size, "vocab_size", 1)
        embedding_dim = _int(embedding_dim, "embedding_dim", 1)
        hidden_size = _int(hidden_size, "hidden_size", 1)
        num_layers = _int(num_layers, "num_layers", 1)
        if cell not in _CELLS:
            raise ValueError(f"LanguageModel: cell: expected one of {_CELLS}, got {cell!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"LanguageModel: dropout: expected a probability in [0, 1), got {dropout!r}")
        if tie_weights and embedding_dim != hidden_size:
            raise ValueError(f"LanguageModel: tie_weights: needs embedding_dim == hidden_size, got "
                             f"{embedding_dim} and {hidden_size}")
        self._config = dict(vocab_size=vocab_size, embedding_dim=embedding_dim, hidden_size=hidden_size,
                            num_layers=num_layers, cell=cell, dropout=float(dropout),
                            tie_weights=bool(tie_weights))
        seeds = np.random.default_rng(seed).integers(2**63, size=4)
        self.embedding = Embedding(vocab_size, embedding_dim, seed=int(seeds[0]))
        kind = {"lstm": LSTM, "gru": GRU}.get(cell)
        if kind is None:
            self.rnn = RNN(embedding_dim, hidden_size, num_layers,
                           nonlinearity="relu" if cell == "rnn_relu" else "tanh", batch_first=True,
                           dropout=float(dropout), seed=int(seeds[1]))
        else:
            self.rnn = kind(embedding_dim, hidden_size, num_layers, batch_first=True, dropout=float(dropout),
                            seed=int(seeds[1]))
        self.drop = Dropout(float(dropout))
        self.decoder = Linear(hidden_size, vocab_size, seed=int(seeds[2]))
        if tie_weights:
            self.decoder.weight = self.embedding.weight  # one Parameter: both gradients accumulate into it
        # One generator drives every dropout mask (re-seeding the layers per forward), so a single
        # state captures them all for an exact resume.
        self._dropout_rng = np.random.default_rng(int(seeds[3]))

    # configuration --------------------------------------------------------------------
    @property
    def config(self) -> dict:
        """The constructor arguments (without ``seed``): ``LanguageModel(**config)`` rebuilds the shape."""
        return dict(self._config)

    @classmethod
    def from_config(cls, config: dict, seed=None) -> "LanguageModel":
        return cls(**config, seed=seed)

    @property
    def vocab_size(self) -> int:
        return self._config["vocab_size"]

    @property
    def is_lstm(self) -> bool:
        return self._config["cell"] == "lstm"

    def zero_state(self, batch_size: int):
        """An all-zero initial state for ``batch_size`` sequences ((h, c) for an LSTM)."""
        shape = (self.rnn.num_layers, int(batch_size), self.rnn.hidden_size)
        h = np.zeros(shape, np.float32)
        return (h, np.zeros(shape, np.float32)) if self.is_lstm else h

    # training -------------------------------------------------------------------------
    def forward(self, ids, state=None, lengths=None):
        """``ids`` (B, T) ints → ``(logits (B, T, V) float32, new_state)``.

        ``state`` is the previous call's ``new_state`` (or None for zeros); ``lengths`` (B,)
        marks ragged batches as in the recurrent layers.
        """
        return super().forward(ids, state, lengths)

    def _forward(self, ids, state=None, lengths=None):
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(f"LanguageModel.forward: ids: expected shape (B, T), got {ids.shape}")
        if self.training and self._config["dropout"] > 0.0:
            s_rnn, s_out = self._dropout_rng.integers(2**63, size=2)
            self.rnn.seed_dropout(int(s_rnn))
            self.drop.seed_dropout(int(s_out))
        x, c_emb = self.embedding.forward_ctx(ids)
        (out, new_state), c_rnn = self.rnn.forward_ctx(x, state, lengths)
        dropped, c_drop = self.drop.forward_ctx(out)
        logits, c_dec = self.decoder.forward_ctx(dropped)
        return (logits, new_state), ((c_emb, c_rnn, c_drop, c_dec) if self.saving() else None)

    def backward(self, grad_logits, grad_state=None):
        """Accumulates every parameter's gradient. Returns None (ids have no gradient); the
        gradient of the initial state is :attr:`grad_state` afterwards."""
        return super().backward(grad_logits, grad_state)

    def _backward(self, ctx, grad_logits, grad_state=None):
        c_emb, c_rnn, c_drop, c_dec = ctx.saved
        g = self.decoder.backward_ctx(c_dec, grad_logits)
        g = self.drop.backward_ctx(c_drop, g)
        g = self.rnn.backward_ctx(c_rnn, g, grad_state)
        ctx.grad_hx = c_rnn.grad_hx
        self.embedding.backward_ctx(c_emb, g)
        return None

    @property
    def grad_state(self):
        """Gradient of the loss w.r.t. the ``state`` given to the last forward (after backward)."""
        return self.rnn.grad_hx

    # generation -----------------------------------------------------------------------
    def generate(self, prime_ids, max_len: int, temperature: float = 1.0, top_k: int | None = None,
                 seed=None, stream_callback=None) -> np.ndarray:
        """Sample ``max_len`` tokens that continue ``prime_ids`` (a non-empty 1-D id sequence).

        Each token is drawn from softmax(logits / temperature), restricted to the ``top_k``
        most likely tokens when given. ``seed`` makes the draw reproducible. ``stream_callback``
        is called with each new token id as soon as it is drawn. Returns the new ids (int64,
        without the prime). The model is left in the mode it was in.
        """
        prime = np.asarray(prime_ids)
        if prime.ndim != 1 or prime.size == 0:
            raise ValueError(f"generate: prime_ids: expected a non-empty 1-D sequence of ids, got shape {prime.shape}")
        if prime.dtype.kind not in "iu":
            raise TypeError(f"generate: prime_ids: expected integer ids, got dtype {prime.dtype}")
        V = self.vocab_size
        if prime.min() < 0 or prime.max() >= V:
            bad = int(prime.min()) if prime.min() < 0 else int(prime.max())
            raise ValueError(f"generate: prime_ids: expected ids in [0, {V}), got {bad}")
        max_len = _int(max_len, "max_len", 0)
        if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) \
                or not math.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"generate: temperature: expected a finite number > 0, got {temperature!r}")
        k = V if top_k is None else min(_int(top_k, "top_k", 1), V)
        rng = np.random.default_rng(seed)

        was_training = self.training
        self.eval()
        try:
            stream = self.rnn.stream(1)
            if prime.size > 1:  # all but the last prime token in one kernel call per layer
                _, state = self.rnn(self.embedding(prime[None, :-1]))
                stream.state = state
            return self._sample_loop(stream, int(prime[-1]), max_len, 1.0 / float(temperature), k, rng,
                                     stream_callback)
        finally:
            self.train(was_training)

    def _sample_loop(self, stream, token, max_len, inv_temp, k, rng, callback):
        table = self.embedding.weight.data
        w_t = self.decoder.weight.data.T  # (H, V) view; np.dot hands the transpose to BLAS
        bias = self.decoder.bias.data if self.decoder.bias is not None else None
        V = w_t.shape[1]
        step = stream.step
        h = np.empty((1, self.rnn.hidden_size), np.float32)
        logits = np.empty((1, V), np.float32)
        uniforms = rng.random(max_len)  # one draw per token, made up front
        out = np.empty(max_len, np.int64)
        exp, cumsum, searchsorted = np.exp, np.cumsum, np.searchsorted
        for i in range(max_len):
            step(table[token:token + 1], h)
            np.dot(h, w_t, out=logits)
            z = logits[0]
            if bias is not None:
                z += bias
            if k < V:
                idx = np.argpartition(z, V - k)[V - k:]
                z = z[idx]
            z = z.astype(np.float64)
            z -= z.max()
            z *= inv_temp
            c = cumsum(exp(z))
            j = min(int(searchsorted(c, uniforms[i] * c[-1], side="right")), c.size - 1)
            token = int(idx[j]) if k < V else j
            out[i] = token
            if callback is not None:
                callback(token)
        return out

    def extra_repr(self) -> str:
        c = self._config
        return (f"vocab_size={c['vocab_size']}, cell={c['cell']!r}, num_layers={c['num_layers']}, "
                f"hidden_size={c['hidden_size']}, embedding_dim={c['embedding_dim']}, dropout={c['dropout']}"
                + (", tie_weights=True" if c["tie_weights"] else ""))
