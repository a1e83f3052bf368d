"""Pieces shared by the ready models: argument checks, building a recurrent layer, the
input front end (ids or numeric features), length checks, and save/load through checkpoints."""
from __future__ import annotations

import contextlib
import math
import numbers

import numpy as np

from ..nn import GRU, LSTM, RNN, Dropout, Embedding, GRUCell, LSTMCell, Module, RNNCell
from ..nn._checks import check_int  # noqa: F401  (the models' integer check, re-exported)
from ..text import length_mask  # noqa: F401

CELLS = ("rnn", "rnn_tanh", "rnn_relu", "lstm", "gru")


# argument checks ------------------------------------------------------------------------------
def check_prob(value, name: str, where: str, hi_open: bool = True) -> float:
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value) \
        and 0.0 <= value and (value < 1.0 if hi_open else value <= 1.0)
    if not ok:
        raise ValueError(f"{where}: {name}: expected a probability in [0, {'1)' if hi_open else '1]'}, got {value!r}")
    return float(value)


def check_choice(value, name: str, choices, where: str):
    if value not in choices:
        raise ValueError(f"{where}: {name}: expected one of {tuple(choices)}, got {value!r}")
    return value


def seeds(seed, n: int) -> list:
    """``n`` independent integer seeds derived from one (so each part is reproducible)."""
    return [int(s) for s in np.random.default_rng(seed).integers(2**63, size=n)]


# recurrent layers -----------------------------------------------------------------------------
def make_rnn(cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float,
             bidirectional: bool, seed: int):
    """A batch-first RNN/LSTM/GRU of the named cell kind."""
    cls = {"lstm": LSTM, "gru": GRU}.get(cell)
    if cls is not None:
        return cls(input_size, hidden_size, num_layers, batch_first=True, dropout=dropout,
                   bidirectional=bidirectional, seed=seed)
    return RNN(input_size, hidden_size, num_layers, nonlinearity="relu" if cell == "rnn_relu" else "tanh",
               batch_first=True, dropout=dropout, bidirectional=bidirectional, seed=seed)


def shared_cells(rnn) -> list:
    """One cell per layer of a unidirectional ``rnn`` holding the SAME Parameter objects, so a
    step-by-step run (a decoder feeding back its own predictions) trains the layer's weights.
    The cells are kept out of the module tree: the parameters stay named as the layer's."""
    if rnn.direction != "forward":
        raise ValueError(f"shared_cells: a {rnn.direction} layer has no step-by-step form")
    cells = []
    for k in range(rnn.num_layers):
        size_in = rnn.input_size if k == 0 else rnn.hidden_size
        if rnn.cell == "lstm":
            c = LSTMCell(size_in, rnn.hidden_size, bias=rnn.bias, seed=0, peepholes=rnn.peepholes)
        elif rnn.cell == "gru":
            c = GRUCell(size_in, rnn.hidden_size, bias=rnn.bias, seed=0, linear_before_reset=rnn.linear_before_reset)
        else:
            c = RNNCell(size_in, rnn.hidden_size, bias=rnn.bias, nonlinearity=rnn.nonlinearity, seed=0)
        w_ih, w_hh, b_ih, b_hh = rnn._layer_params[k][0]
        c.weight_ih, c.weight_hh = w_ih, w_hh
        if rnn.peepholes:
            c.weight_p = rnn._peep_params[k][0]
        if rnn.bias:
            c.bias_ih, c.bias_hh = b_ih, b_hh
        cells.append(c)
    return cells


def top_hidden(h_n, num_layers: int, num_directions: int) -> np.ndarray:
    """(B, D*H): the top layer's final state of each direction, concatenated (forward first)."""
    L, D = num_layers, num_directions
    return np.concatenate([h_n[(L - 1) * D + d] for d in range(D)], axis=1)


# inputs -------------------------------------------------------------------------------------
def check_lengths(lengths, batch: int, steps: int, where: str) -> np.ndarray:
    """int64 (B,) lengths in [1, T]; None means every sequence fills the T steps."""
    if steps == 0:
        raise ValueError(f"{where}: x: empty sequences (0 time steps); every sequence needs at least one step")
    if lengths is None:
        return np.full(batch, steps, np.int64)
    arr = np.asarray(lengths)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{where}: lengths: expected an integer array, got dtype {arr.dtype}")
    if arr.shape != (batch,):
        raise ValueError(f"{where}: lengths: expected shape ({batch},) (one length per sequence), got {arr.shape}")
    if arr.size and arr.min() < 1:
        i = int(np.argmin(arr))
        raise ValueError(f"{where}: lengths: sequence {i} is empty (length {int(arr[i])}); every sequence needs "
                         "at least one step")
    if arr.size and arr.max() > steps:
        i = int(np.argmax(arr))
        raise ValueError(f"{where}: lengths: sequence {i} has length {int(arr[i])} but x has only {steps} steps")
    return arr.astype(np.int64)


def check_max_len(steps: int, lengths: np.ndarray, max_len, where: str, what: str = "x") -> None:
    if max_len is not None and int(lengths.max()) > max_len:
        i = int(np.argmax(lengths))
        raise ValueError(f"{where}: {what}: sequence {i} has {int(lengths[i])} steps, longer than the model's "
                         f"declared max_len={max_len}")


class InputEncoder(Module):
    """The front end of a sequence model: token ids through an Embedding, or numeric features as they are.

    ids: (B, T) integers -> (B, T, embedding_dim); features: (B, T, input_size) floats pass through.
    Dropout follows in both cases.
    """

    def __init__(self, vocab_size, embedding_dim, input_size, padding_idx, dropout, seed, where):
        super().__init__()
        self.where = where
        if (vocab_size is None) == (input_size is None):
            raise ValueError(f"{where}: give either vocab_size (token ids, with embedding_dim) or input_size "
                             f"(numeric features), got vocab_size={vocab_size!r}, input_size={input_size!r}")
        s = seeds(seed, 2)
        if vocab_size is not None:
            vocab_size = check_int(vocab_size, "vocab_size", 1, where)
            embedding_dim = check_int(embedding_dim, "embedding_dim", 1, where)
            if padding_idx is not None:
                padding_idx = check_int(padding_idx, "padding_idx", 0, where)
                if padding_idx >= vocab_size:
                    raise ValueError(f"{where}: padding_idx: expected an id < vocab_size={vocab_size}, "
                                     f"got {padding_idx}")
            self.embedding = Embedding(vocab_size, embedding_dim, padding_idx=padding_idx, seed=s[0])
            self.output_size = embedding_dim
        else:
            if embedding_dim is not None:
                raise ValueError(f"{where}: embedding_dim: only for token ids (vocab_size), got {embedding_dim!r} "
                                 "with numeric input")
            self.embedding = None
            self.output_size = check_int(input_size, "input_size", 1, where)
        self.drop = Dropout(dropout, seed=s[1])

    def shape_of(self, x):
        """(B, T) of an input, checked for kind and rank."""
        x = np.asarray(x)
        if self.embedding is not None:
            if x.dtype.kind not in "iu":
                raise TypeError(f"{self.where}: x: expected integer token ids (B, T), got dtype {x.dtype}")
            if x.ndim != 2:
                raise ValueError(f"{self.where}: x: expected token ids of shape (B, T), got shape {x.shape}")
        else:
            if x.dtype.kind != "f":
                raise TypeError(f"{self.where}: x: expected floating-point features (B, T, "
                                f"{self.output_size}), got dtype {x.dtype}")
            if x.ndim != 3 or x.shape[2] != self.output_size:
                raise ValueError(f"{self.where}: x: expected shape (B, T, {self.output_size}), got {x.shape}")
        if x.shape[0] == 0:
            raise ValueError(f"{self.where}: x: empty batch (0 sequences)")
        return x.shape[0], x.shape[1]

    def _forward(self, x):
        if self.embedding is not None:
            x, c_emb = self.embedding.forward_ctx(np.asarray(x))
        else:
            x, c_emb = np.asarray(x, dtype=np.float32), None
        out, c_drop = self.drop.forward_ctx(x)
        return out, ((c_emb, c_drop) if self.saving() else None)

    def _backward(self, ctx, grad):
        c_emb, c_drop = ctx.saved
        g = self.drop.backward_ctx(c_drop, grad)
        if self.embedding is not None:
            self.embedding.backward_ctx(c_emb, g)
            return None
        return g


# modes -------------------------------------------------------------------------------------
@contextlib.contextmanager
def eval_mode(module):
    """Run a block in eval mode and restore the previous mode afterwards."""
    was = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was)


# teacher forcing ------------------------------------------------------------------------------
def special_ids(config: dict, where: str, how_to_attach: str) -> tuple:
    """(bos_id, eos_id) of a generating model's config, or a ValueError saying how to set them."""
    if config["bos_id"] is None or config["eos_id"] is None:
        raise ValueError(f"{where}: no <bos>/<eos> ids: {how_to_attach}, or build the model with bos_id= and eos_id=")
    return config["bos_id"], config["eos_id"]


def shift_for_teacher_forcing(seqs, bos_id: int, eos_id: int, pad_id: int = 0, where: str = "teacher forcing"):
    """From target sequences y (lists of ids) make the decoder input ``<bos> y`` and the target
    ``y <eos>``, padded: returns (inputs (B, T), targets (B, T), lengths (B,)) with T = max len + 1."""
    seqs = [np.asarray(s, dtype=np.int64).reshape(-1) for s in seqs]
    if not seqs:
        raise ValueError(f"{where}: seqs: expected at least one sequence, got none")
    lengths = np.array([len(s) + 1 for s in seqs], np.int64)
    T = int(lengths.max())
    inputs = np.full((len(seqs), T), pad_id, np.int64)
    targets = np.full((len(seqs), T), pad_id, np.int64)
    for b, s in enumerate(seqs):
        inputs[b, 0] = bos_id
        inputs[b, 1:len(s) + 1] = s
        targets[b, :len(s)] = s
        targets[b, len(s)] = eos_id
    return inputs, targets, lengths


def check_labels(target, num_classes: int, where: str, mask=None) -> np.ndarray:
    """Integer class ids in [0, num_classes) (only where ``mask`` is True)."""
    t = np.asarray(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{where}: target: expected integer labels, got dtype {t.dtype}")
    valid = t if mask is None else t[mask]
    if valid.size and (valid.min() < 0 or valid.max() >= num_classes):
        bad = int(valid.min()) if valid.min() < 0 else int(valid.max())
        raise ValueError(f"{where}: target: label {bad} is outside the label set [0, {num_classes})")
    return t


# save / load ---------------------------------------------------------------------------------
class Saveable:
    """``model.save(path)`` / ``Cls.load(path)``: weights, config and vocabularies in one
    rnnfast checkpoint (safetensors). Subclasses provide ``config`` and list their vocabulary
    attributes in ``_vocab_attrs``."""

    _vocab_attrs: tuple = ()

    def save(self, path, extra=None) -> None:
        from ..checkpoint import save_checkpoint
        vocabs = {a: (None if getattr(self, a) is None else getattr(self, a).to_dict()) for a in self._vocab_attrs}
        save_checkpoint(path, self, extra={"model": type(self).__name__, "config": self.config,
                                           "vocabs": vocabs, "user": extra})

    @classmethod
    def load(cls, path):
        """Rebuild a model saved with :meth:`save` (also accepts a Trainer checkpoint whose
        ``extra`` holds ``config``)."""
        from ..checkpoint import load_checkpoint
        from ..text import Vocab
        probe = load_checkpoint(path)
        meta = probe.extra if isinstance(probe.extra, dict) else {}
        kind = meta.get("model", probe.metadata.get("model_type"))
        if kind != cls.__name__ or not isinstance(meta.get("config"), dict):
            raise ValueError(f"{cls.__name__}.load: {path}: holds a {kind!r} checkpoint without a "
                             f"{cls.__name__} config; save it with {cls.__name__}.save")
        model = cls(**meta["config"])
        load_checkpoint(path, model)
        for a, d in (meta.get("vocabs") or {}).items():
            if a in cls._vocab_attrs and d is not None:
                model._attach_vocab(a, Vocab.from_dict(d))
        return model

    def _attach_vocab(self, attr, vocab):
        setattr(self, attr, vocab)
