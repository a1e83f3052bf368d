"""Feed-forward layers with explicit forward/backward: Linear, Embedding, Dropout, LayerNorm, Sequential.

Conventions (module.py): a training forward keeps what its backward needs in a context,
``backward(grad_output)`` returns the input gradient and accumulates (+=) into ``Parameter.grad``.
float32 is the fast path; a float64 input is computed in float64 (the gradient checks use that).
"""
from __future__ import annotations

import gzip
import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .. import _core
from ._checks import MAX_SIZE, check_int, private_copy
from .module import DropoutRng, Module, Parameter, accumulating

__all__ = ["Linear", "Embedding", "Dropout", "LayerNorm", "Sequential", "WordVectorReport"]


# helpers ------------------------------------------------------------------------------------------
def _float_input(x, where: str, name: str = "input") -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind != "f":
        raise TypeError(f"{where}: {name}: expected a floating-point array, got dtype {arr.dtype}")
    if arr.dtype != np.float64 and arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    return arr


def _check_grad_shape(grad, shape, where: str) -> np.ndarray:
    grad = np.asarray(grad)
    if grad.shape != tuple(shape):
        raise ValueError(f"{where}: grad_output: expected shape {tuple(shape)}, got {grad.shape}")
    if grad.dtype.kind != "f":
        raise TypeError(f"{where}: grad_output: expected a floating-point array, got dtype {grad.dtype}")
    return grad


# Linear -------------------------------------------------------------------------------------------
class Linear(Module):
    """y = x W^T + b over the last dimension; x has shape (..., in_features)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, seed=None):
        super().__init__()
        self.in_features = check_int(in_features, "in_features", 1, "Linear", maximum=MAX_SIZE)
        self.out_features = check_int(out_features, "out_features", 1, "Linear", maximum=MAX_SIZE)
        gen = np.random.default_rng(seed)  # like the recurrent layers: an int, a Generator or None
        bound = 1.0 / math.sqrt(self.in_features)  # PyTorch's kaiming_uniform(a=sqrt(5)) bound
        self.weight = Parameter(gen.uniform(-bound, bound, (self.out_features, self.in_features)))
        if bias:
            self.bias = Parameter(gen.uniform(-bound, bound, (self.out_features,)))
        else:
            self.register_parameter("bias", None)

    def forward(self, x):
        """``x`` (..., in_features) float -> (..., out_features)."""
        return super().forward(x)

    def _forward(self, given):
        x = _float_input(given, "Linear.forward", "x")
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear.forward: x: expected shape (..., {self.in_features}), got {x.shape}")
        x2 = x.reshape(-1, self.in_features)
        out = _matmul(x2, self.weight.data, b_transposed=True)
        if self.bias is not None:
            out += self.bias.data
        saved = (private_copy(x2, given), x.shape) if self.saving() else None
        return out.reshape(x.shape[:-1] + (self.out_features,)), saved

    def backward(self, grad_output):
        """Gradient of the input of this thread's newest pending forward; adds into the grads."""
        return super().backward(grad_output)

    def _backward(self, ctx, grad_output):
        x2, in_shape = ctx.saved
        g = _check_grad_shape(grad_output, in_shape[:-1] + (self.out_features,), "Linear.backward")
        g2 = g.reshape(-1, self.out_features)
        with accumulating(self.weight, self.bias):
            _matmul(np.ascontiguousarray(g2.T), x2, out=self.weight.grad)
            if self.bias is not None:
                self.bias.grad += g2.sum(axis=0)
        return _matmul(g2, self.weight.data).reshape(in_shape)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def _matmul(a, b, b_transposed=False, out=None):
    """a @ b (or a @ b.T), added into ``out`` when given. float32 runs on the core's GEMM: the same
    threads as the recurrent kernels (numpy's BLAS threads would fight their spinning workers) and
    the same bitwise results for any thread count; float64 (finite-difference checks) uses numpy."""
    if a.dtype == np.float32 and b.dtype == np.float32 and (out is None or out.dtype == np.float32):
        a = np.ascontiguousarray(a)
        b = np.ascontiguousarray(b)
        shape = (a.shape[0], b.shape[0] if b_transposed else b.shape[1])
        if out is None:
            res = np.empty(shape, np.float32)
            _core.gemm(a, b, res, False, b_transposed)
            return res
        _core.gemm(a, b, out, True, b_transposed)
        return out
    res = a @ (b.T if b_transposed else b)
    if out is None:
        return res
    out += res
    return out


# Embedding ----------------------------------------------------------------------------------------
@dataclass
class WordVectorReport:
    """What ``Embedding.load_word_vectors`` did: ``found`` of ``total`` vocabulary words got a vector."""

    path: str
    found: int
    total: int
    dim: int
    file_words: int
    missing: list = field(default_factory=list, repr=False)

    @property
    def coverage(self) -> float:
        return self.found / self.total if self.total else 0.0

    def as_dict(self) -> dict:
        return {"path": self.path, "found": self.found, "total": self.total, "dim": self.dim,
                "file_words": self.file_words, "coverage": self.coverage, "missing": list(self.missing)}

    def __str__(self) -> str:
        return (f"{self.found} of {self.total} vocabulary words found ({100 * self.coverage:.1f}%) "
                f"among {self.file_words} vectors of dimension {self.dim} in {self.path}")


# Gradient scatter for repeated ids. Measured for 64*100 ids x 512 dims: np.add.at 26 ms; the
# pairwise segmented sum below ~6 ms for any vocabulary size; a one-hot GEMM over the table
# rows 2.6 ms at 30 rows but 5-12 ms from ~100 rows (it scales with the row count), so the GEMM
# is used only for small tables, and it is the core's GEMM: numpy's BLAS threads would fight ours.
_ONE_HOT_MAX_ROWS = 64


def _scatter_add_rows(table: np.ndarray, ids: np.ndarray, rows: np.ndarray) -> None:
    """table[ids[i]] += rows[i] for every i, repeated ids accumulating (like np.add.at, faster)."""
    n = ids.size
    if n == 0:
        return
    if table.shape[0] <= _ONE_HOT_MAX_ROWS:
        one_hot = np.zeros((table.shape[0], n), dtype=rows.dtype)
        one_hot[ids, np.arange(n)] = 1.0
        _matmul(one_hot, rows, out=table)
        return
    # Pairwise segmented sum: sort by id, then repeatedly add neighbours of the same id and
    # halve the segments; ids left alone in their segment are written out with a plain
    # fancy-index add (correct because they are unique). Total work ~2 passes over ``rows``.
    order = np.argsort(ids, kind="stable")
    keys, src, at = ids[order], rows, order
    while True:
        m = keys.size
        start = np.empty(m, dtype=bool)
        start[0] = True
        np.not_equal(keys[1:], keys[:-1], out=start[1:])
        end = np.empty(m, dtype=bool)
        end[-1] = True
        end[:-1] = start[1:]
        single = start & end
        if single.any():
            table[keys[single]] += src[at[single]]
            if single.all():
                return
        idx = np.arange(m)
        rank = idx - np.maximum.accumulate(np.where(start, idx, 0))
        kept = np.flatnonzero(~single & (rank % 2 == 0))
        has_partner = ~end[kept]
        summed = src[at[kept]]
        summed[has_partner] += src[at[kept[has_partner] + 1]]
        keys, src, at = keys[kept], summed, np.arange(kept.size)


def _vocab_items(vocab):
    """(token, id) pairs from a dict-like vocabulary, an object with ``.stoi``, or one with ``encode``."""
    if isinstance(vocab, Mapping):
        return list(vocab.items())
    stoi = getattr(vocab, "stoi", None)
    if isinstance(stoi, Mapping):
        return list(stoi.items())
    if callable(getattr(vocab, "encode", None)) and hasattr(vocab, "__iter__"):
        items = []
        for tok in vocab:
            ids = np.asarray(vocab.encode(tok)).reshape(-1)
            if ids.size != 1:
                raise ValueError(f"load_word_vectors: vocab: encode({tok!r}) gave {ids.size} ids, expected 1")
            items.append((tok, ids[0]))
        return items
    raise TypeError("load_word_vectors: vocab: expected a dict token->id, an object with a .stoi mapping, "
                    f"or an iterable object with encode(); got {type(vocab).__name__}")


def _trailing_numbers(tokens) -> int:
    n = 0
    for tok in reversed(tokens):
        try:
            float(tok)
        except ValueError:
            break
        n += 1
    return n


class Embedding(Module):
    """A lookup table: ids of any shape -> vectors of shape ids.shape + (embedding_dim,).

    Row ``padding_idx`` starts at zero and never receives a gradient. ``freeze=True`` makes
    backward accumulate nothing (the optimizer should then not be given ``weight``, or use
    no weight decay, since an optimizer cannot tell a frozen parameter from an unlucky one).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 *, freeze: bool = False, seed=None):
        super().__init__()
        self.num_embeddings = check_int(num_embeddings, "num_embeddings", 1, "Embedding", maximum=MAX_SIZE)
        self.embedding_dim = check_int(embedding_dim, "embedding_dim", 1, "Embedding", maximum=MAX_SIZE)
        self.padding_idx = self._check_padding_idx(padding_idx, self.num_embeddings)
        self.freeze = bool(freeze)
        self.weight = Parameter(np.random.default_rng(seed).standard_normal((self.num_embeddings, self.embedding_dim)),
                                requires_grad=not self.freeze)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0.0
            self.weight.mark_changed()

    @staticmethod
    def _check_padding_idx(padding_idx, num_embeddings: int):
        if padding_idx is None:
            return None
        if isinstance(padding_idx, (bool, np.bool_)) or not isinstance(padding_idx, (int, np.integer)):
            raise TypeError(f"Embedding: padding_idx: expected an int or None, got {padding_idx!r}")
        if not -num_embeddings <= padding_idx < num_embeddings:
            raise ValueError(f"Embedding: padding_idx: expected a value in [-{num_embeddings}, "
                             f"{num_embeddings}), got {padding_idx}")
        return int(padding_idx) % num_embeddings  # negative counts from the end, as in PyTorch

    @classmethod
    def from_pretrained(cls, embeddings, freeze: bool = True, padding_idx: int | None = None) -> "Embedding":
        """An Embedding holding a copy of ``embeddings`` (2-D); the padding row keeps its given values.

        ``freeze=True`` (PyTorch's default) keeps the vectors fixed: no gradient, no optimizer update."""
        arr = np.asarray(embeddings)
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"Embedding.from_pretrained: embeddings: expected a numeric array, got dtype {arr.dtype}")
        if arr.ndim != 2:
            raise ValueError(f"Embedding.from_pretrained: embeddings: expected a 2-D array, got shape {arr.shape}")
        emb = cls(arr.shape[0], arr.shape[1], padding_idx=padding_idx, freeze=freeze, seed=0)
        emb.weight.data = arr
        return emb

    def forward(self, input):
        """``input`` integer ids of any shape -> float32 vectors ``input.shape + (embedding_dim,)``."""
        return super().forward(input)

    def _forward(self, input):
        ids = np.asarray(input)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"Embedding.forward: input: expected an integer array of ids, got dtype {ids.dtype}")
        if ids.size:
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= self.num_embeddings:
                bad = lo if lo < 0 else hi
                raise ValueError(f"Embedding.forward: input: expected ids in [0, {self.num_embeddings}), got {bad}")
        out = np.take(self.weight.data, ids, axis=0)
        return out, (((None if self.freeze else ids.copy()),) if self.saving() else None)

    def backward(self, grad_output):
        """Accumulates the weight gradient; returns None (ids have no gradient)."""
        return super().backward(grad_output)

    def _backward(self, ctx, grad_output):
        ids, = ctx.saved
        if ids is None:  # frozen: nothing to accumulate
            return None
        g = _check_grad_shape(grad_output, ids.shape + (self.embedding_dim,), "Embedding.backward")
        grad = self.weight.grad
        g2 = g.reshape(-1, self.embedding_dim)
        if g2.dtype != grad.dtype:
            g2 = g2.astype(grad.dtype)
        pad = self.padding_idx
        with accumulating(self.weight):
            kept = grad[pad].copy() if pad is not None else None
            _scatter_add_rows(grad, ids.reshape(-1), g2)
            if pad is not None:
                grad[pad] = kept  # the padding row never receives gradient
        return None

    def load_word_vectors(self, path, vocab, *, encoding: str = "utf-8") -> WordVectorReport:
        """Copy vectors from a word2vec or GloVe text file into the rows of the words in ``vocab``.

        ``vocab`` maps token -> row id (a dict, an object with ``.stoi`` such as
        ``rnnfast.text.Vocab``, or an iterable object with ``encode``). The optional word2vec
        header line ("count dim") is detected; ``.gz`` files are read compressed. Rows of words
        absent from the file and the padding row are left as they are. Returns a report.
        """
        items = _vocab_items(vocab)
        stoi = {}
        for tok, i in items:
            if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
                raise TypeError(f"load_word_vectors: vocab: id of {tok!r} must be an int, got {i!r}")
            if not 0 <= i < self.num_embeddings:
                raise ValueError(f"load_word_vectors: vocab: id of {tok!r} is {i}, expected a value in "
                                 f"[0, {self.num_embeddings})")
            if i != self.padding_idx:
                stoi[tok] = int(i)
        dim = self.embedding_dim
        found: dict[str, np.ndarray] = {}  # staged: a bad line later on must not leave a half-loaded table
        file_words = 0
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rt", encoding=encoding, errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                if file_words == 0:
                    head = line.split()
                    if lineno == 1 and len(head) == 2 and head[0].isdigit() and head[1].isdigit():
                        if int(head[1]) != dim:  # the word2vec header: "count dim"
                            raise ValueError(f"load_word_vectors: {path}: vectors have dimension {head[1]}, "
                                             f"expected embedding_dim={dim}")
                        continue
                    n = _trailing_numbers(head)  # the first vector tells the file's dimension
                    file_dim = n - 1 if n == len(head) else n
                    if file_dim != dim:
                        raise ValueError(f"load_word_vectors: {path}: vectors have dimension {file_dim} "
                                         f"(line {lineno}), expected embedding_dim={dim}")
                parts = line.rsplit(None, dim)  # from the right: words may contain spaces
                if len(parts) != dim + 1:
                    raise ValueError(f"load_word_vectors: {path}: line {lineno} has {len(parts) - 1} values, "
                                     f"expected {dim}")
                file_words += 1
                word = parts[0]
                row = stoi.get(word)
                if row is None or word in found:  # first occurrence wins, as in gensim
                    continue
                try:
                    found[word] = np.array(parts[1:], dtype=np.float32)
                except ValueError:
                    raise ValueError(f"load_word_vectors: {path}: line {lineno}: not a vector of numbers") from None
                if not np.isfinite(found[word]).all():  # "nan"/"inf" parse as floats but poison training
                    raise ValueError(f"load_word_vectors: {path}: line {lineno}: the vector of {word!r} has "
                                     "non-finite values (nan or inf)")
        if found:
            self.weight.data[[stoi[w] for w in found]] = np.stack(list(found.values()))
            self.weight.mark_changed()
        missing = [tok for tok in stoi if tok not in found]
        return WordVectorReport(path=str(path), found=len(found), total=len(stoi), dim=dim,
                                file_words=file_words, missing=missing)

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        if self.freeze:
            s += ", freeze=True"
        return s


# Dropout ------------------------------------------------------------------------------------------
class Dropout(DropoutRng, Module):
    """Inverted dropout: in training zero each element with probability p, scale the rest by 1/(1-p).

    Identity in eval mode. The mask comes from its own numpy Generator (``seed``), so a run is
    reproducible; ``seed_dropout`` and ``get_rng_state``/``set_rng_state`` (the one dropout-RNG API
    of every module that draws masks) support resuming exactly.
    """

    def __init__(self, p: float = 0.5, seed=None):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float, np.floating, np.integer)):
            raise TypeError(f"Dropout: p: expected a float, got {type(p).__name__} {p!r}")
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"Dropout: p: expected a probability in [0, 1], got {p}")
        self.p = float(p)
        self._dropout_rng = np.random.default_rng(seed)

    def forward(self, x):
        """``x`` float array of any shape -> the same shape (identity in eval mode)."""
        return super().forward(x)

    def _forward(self, x):
        x = _float_input(x, "Dropout.forward", "x")
        if not self.training or self.p == 0.0:
            mask, out = None, x
        elif self.p == 1.0:
            mask = np.zeros(x.shape, dtype=np.float32)
            out = x * mask
        else:
            mask = self._dropout_rng.random(x.shape, dtype=np.float32)
            np.greater_equal(mask, np.float32(self.p), out=mask, casting="unsafe")
            mask *= np.float32(1.0 / (1.0 - self.p))
            out = x * mask
        return out, ((mask, x.shape) if self.saving() else None)

    def backward(self, grad_output):
        """Gradient of the input; in eval mode (the identity) it needs no forward."""
        if not self.training and not self.pending():
            return _float_input(grad_output, "Dropout.backward", "grad_output")
        return super().backward(grad_output)

    def _backward(self, ctx, grad_output):
        mask, shape = ctx.saved
        g = _check_grad_shape(grad_output, shape, "Dropout.backward")
        return g if mask is None else g * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


# LayerNorm ----------------------------------------------------------------------------------------
class LayerNorm(Module):
    """Normalise over the trailing ``normalized_shape`` dims (biased variance), then scale and shift."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
        if not shape:
            raise ValueError("LayerNorm: normalized_shape: expected at least one dimension, got ()")
        self.normalized_shape = tuple(check_int(d, "normalized_shape", 1, "LayerNorm") for d in shape)
        if not float(eps) > 0:
            raise ValueError(f"LayerNorm: eps: expected a positive float, got {eps}")
        self.eps = float(eps)
        self.elementwise_affine = bool(elementwise_affine)
        if self.elementwise_affine:
            self.weight = Parameter(np.ones(self.normalized_shape, dtype=np.float32))
            if bias:
                self.bias = Parameter(np.zeros(self.normalized_shape, dtype=np.float32))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x):
        """``x`` float (..., *normalized_shape) -> the same shape."""
        return super().forward(x)

    def _forward(self, x):
        x = _float_input(x, "LayerNorm.forward", "x")
        k = len(self.normalized_shape)
        if x.shape[x.ndim - k:] != self.normalized_shape or x.ndim < k:
            raise ValueError(f"LayerNorm.forward: x: expected shape (..., {', '.join(map(str, self.normalized_shape))}),"
                             f" got {x.shape}")
        m = math.prod(self.normalized_shape)
        x2 = x.reshape(-1, m)
        xhat = x2 - x2.mean(axis=1, keepdims=True)
        var = np.mean(np.square(xhat), axis=1, keepdims=True)
        rstd = 1.0 / np.sqrt(var + x.dtype.type(self.eps))
        xhat *= rstd
        if self.weight is not None:
            out = xhat * self.weight.data.reshape(-1)
            if self.bias is not None:
                out += self.bias.data.reshape(-1)
        else:
            out = xhat.copy() if self.saving() else xhat  # xhat is kept for backward: not the caller's
        return out.reshape(x.shape), ((xhat, rstd, x.shape) if self.saving() else None)

    def backward(self, grad_output):
        """Gradient of the input of this thread's newest pending forward; adds into the grads."""
        return super().backward(grad_output)

    def _backward(self, ctx, grad_output):
        xhat, rstd, shape = ctx.saved
        g = _check_grad_shape(grad_output, shape, "LayerNorm.backward").reshape(xhat.shape)
        if self.weight is not None:
            with accumulating(self.weight, self.bias):
                self.weight.grad += np.sum(g * xhat, axis=0).reshape(self.normalized_shape)
                if self.bias is not None:
                    self.bias.grad += g.sum(axis=0).reshape(self.normalized_shape)
            g = g * self.weight.data.reshape(-1)
        # d/dx of (x - mean) * rstd, the two mean terms projected out
        gx = g - g.mean(axis=1, keepdims=True)
        gx -= xhat * np.mean(g * xhat, axis=1, keepdims=True)
        gx *= rstd
        return gx.reshape(shape)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


# Sequential ---------------------------------------------------------------------------------------
class Sequential(Module):
    """Chains modules: forward runs them in order, backward runs their backward in reverse."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], (OrderedDict, dict)):
            named = list(modules[0].items())
        else:
            named = [(str(i), m) for i, m in enumerate(modules)]
        for name, m in named:
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: module {name!r}: expected a rnnfast.nn.Module, got {type(m).__name__}")
            self.add_module(str(name), m)

    def append(self, module: Module) -> "Sequential":
        if not isinstance(module, Module):
            raise TypeError(f"Sequential.append: module: expected a rnnfast.nn.Module, got {type(module).__name__}")
        self.add_module(str(len(self._modules)), module)
        return self

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, idx):
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return Sequential(OrderedDict(items[idx]))
        return items[idx][1]

    def forward(self, x):
        """Each module in order."""
        return super().forward(x)

    def _forward(self, x):
        if not self.saving():
            for m in self._modules.values():
                x = m(x)
            return x, None
        ctxs = []
        for m in self._modules.values():
            x, ctx = m.forward_ctx(x)
            ctxs.append(ctx)
        return x, ctxs

    def backward(self, grad_output):
        """Each module's backward in reverse order."""
        return super().backward(grad_output)

    def _backward(self, ctx, grad_output):
        g = grad_output
        mods = list(self._modules.items())
        for pos in range(len(mods) - 1, -1, -1):
            name, m = mods[pos]
            g = m.backward_ctx(ctx.saved[pos], g)
            if g is None and pos > 0:
                raise RuntimeError(f"Sequential.backward: module {name!r} ({type(m).__name__}) returns no input "
                                   "gradient, so it can only be the first module")
        return g
