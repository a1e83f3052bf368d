"""Batching: shuffled mini-batches, length bucketing, splits, language-model streams, forecasting windows.

Randomness always comes from a numpy ``Generator`` made from ``seed`` (an int, a Generator, or
None for fresh entropy), so a run is reproducible from its seed. Iterating a batcher again draws
a new order from the same Generator: epochs differ, yet the whole run is fixed by the seed.
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from .nn._checks import check_int
from .text import check_lengths

__all__ = [
    "batches",
    "Batches",
    "BucketBatcher",
    "padding_fraction",
    "train_val_test_split",
    "LMStream",
    "sliding_windows",
    "standardize",
    "unstandardize",
]


def _check_int(name: str, value, minimum: int) -> int:
    return check_int(value, name, minimum)


def _rng(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)):
        return np.random.default_rng(seed)
    raise TypeError(f"seed: expected an int, a numpy Generator or None, got {type(seed).__name__} {seed!r}")


def _as_data(n_or_arrays, name: str = "n_or_arrays"):
    """-> (n, arrays, kind): kind 'n' (indices), 'array' (one ndarray) or 'tuple' (several)."""
    if isinstance(n_or_arrays, (int, np.integer)) and not isinstance(n_or_arrays, bool):
        return _check_int(name, n_or_arrays, 0), None, "n"
    if isinstance(n_or_arrays, np.ndarray):
        if n_or_arrays.ndim == 0:
            raise ValueError(f"{name}: expected an array with a first (sample) dimension, got a 0-d array")
        return len(n_or_arrays), (n_or_arrays,), "array"
    if isinstance(n_or_arrays, (tuple, list)):
        if not n_or_arrays:
            raise ValueError(
                f"{name}: expected an int or one or more arrays, got an empty {type(n_or_arrays).__name__}"
            )
        arrays = tuple(np.asarray(a) for a in n_or_arrays)
        for i, a in enumerate(arrays):
            if a.ndim == 0:
                raise ValueError(f"{name}[{i}]: expected an array with a first (sample) dimension, got a scalar")
        n = len(arrays[0])
        for i, a in enumerate(arrays):
            if len(a) != n:
                raise ValueError(f"{name}[{i}]: expected {n} samples like {name}[0], got {len(a)}")
        return n, arrays, "tuple"
    raise TypeError(f"{name}: expected an int, an ndarray or a tuple of arrays, got {type(n_or_arrays).__name__}")


def _take(idx: np.ndarray, arrays, kind):
    if kind == "n":
        return idx
    if kind == "array":
        return arrays[0][idx]
    return tuple(a[idx] for a in arrays)


# ----------------------------------------------------------------------------------------
# shuffled mini-batches
# ----------------------------------------------------------------------------------------
class Batches:
    """Re-iterable mini-batches, made by :func:`batches`.

    ``len()`` is the number of batches per pass; each ``iter()`` is one pass, with a new
    permutation when shuffling.

    Parameters
    ----------
    n_or_arrays : int, ndarray, or tuple of ndarray
    batch_size : int
    shuffle : bool, default True
    seed : int, numpy.random.Generator or None, default None
    drop_last : bool, default False
        As in :func:`batches`.
    """

    def __init__(self, n_or_arrays, batch_size: int, shuffle: bool = True, seed=None, drop_last: bool = False):
        self.n, self._arrays, self._kind = _as_data(n_or_arrays)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self._rng = _rng(seed)

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else math.ceil(self.n / self.batch_size)

    def __iter__(self) -> Iterator:
        order = self._rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        stop = len(self) * self.batch_size
        for start in range(0, min(stop, self.n), self.batch_size):
            yield _take(order[start:start + self.batch_size], self._arrays, self._kind)


def batches(n_or_arrays, batch_size: int, shuffle: bool = True, seed=None, drop_last: bool = False) -> Batches:
    """Mini-batches over ``n`` samples, or over the first dimension of one or more arrays.

    Parameters
    ----------
    n_or_arrays : int, ndarray, or tuple of ndarray
        A sample count (batches are int64 index arrays), one array (batches are its rows), or
        arrays with the same first dimension N (batches are tuples of their rows).
    batch_size : int
    shuffle : bool, default True
        A new permutation every pass (else in order).
    seed : int, numpy.random.Generator or None, default None
        Where the randomness comes from (None: fresh entropy).
    drop_last : bool, default False
        Drop a last batch smaller than ``batch_size``.

    Returns
    -------
    Batches
        Re-iterable with ``len()``; yields index arrays (B,), array slices (B, ...), or tuples.

    Examples
    --------
    >>> import numpy as np
    >>> from rnnfast.data import batches
    >>> X, y = np.zeros((10, 3), np.float32), np.arange(10)
    >>> [xb.shape for xb, yb in batches((X, y), 4, seed=0)]
    [(4, 3), (4, 3), (2, 3)]
    """
    return Batches(n_or_arrays, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)


# ----------------------------------------------------------------------------------------
# bucketing by length
# ----------------------------------------------------------------------------------------
class BucketBatcher:
    """Index batches of samples with similar lengths, to cut padding in ragged batches.

    With ``shuffle``: shuffle, cut into pools of ``batch_size * bucket_size_multiplier``
    samples, sort each pool by length, split it into batches, and shuffle the batch order
    (so batches are random but each is homogeneous). Without ``shuffle`` the whole set is one
    pool: batches in increasing length, the least padding possible (good for evaluation).
    Iterating yields int64 index arrays (B,); ``len()`` is the number of batches per pass.

    Parameters
    ----------
    lengths : array_like of int, shape (N,)
        Each sample's length (>= 0).
    batch_size : int
    shuffle : bool, default True
    seed : int, numpy.random.Generator or None, default None
        Where the randomness comes from (None: fresh entropy).
    bucket_size_multiplier : int, default 50
        Pool size in batches.
    drop_last : bool, default False
    """

    def __init__(self, lengths, batch_size: int, shuffle: bool = True, seed=None,
                 bucket_size_multiplier: int = 50, drop_last: bool = False):
        self.lengths = check_lengths(lengths, "N").astype(np.int64)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.bucket_size_multiplier = _check_int("bucket_size_multiplier", bucket_size_multiplier, 1)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self._rng = _rng(seed)

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[np.ndarray]:
        n, bs = len(self.lengths), self.batch_size
        if self.shuffle:
            order = self._rng.permutation(n)
            pool = bs * self.bucket_size_multiplier  # a multiple of bs: only the last batch can be short
        else:
            order, pool = np.arange(n), max(n, 1)
        out = []
        for p in range(0, n, pool):
            idx = order[p:p + pool]
            idx = idx[np.argsort(self.lengths[idx], kind="stable")]
            out.extend(idx[s:s + bs] for s in range(0, len(idx), bs))
        if self.drop_last and out and len(out[-1]) < bs:
            out.pop()
        if self.shuffle:
            out = [out[i] for i in self._rng.permutation(len(out))]
        yield from out


def padding_fraction(lengths, index_batches) -> float:
    """Share of the padded (B, max length) cells that are padding, over the given batches.

    Parameters
    ----------
    lengths : array_like of int, shape (N,)
    index_batches : iterable of index arrays
        E.g. a :class:`BucketBatcher` or ``batches(N, ...)``.

    Returns
    -------
    float
        In [0, 1); 0 for no batches.
    """
    lengths = np.asarray(lengths)
    total = used = 0
    for idx in index_batches:
        lb = lengths[np.asarray(idx)]
        if lb.size:
            total += lb.size * int(lb.max())
            used += int(lb.sum())
    return 0.0 if total == 0 else 1.0 - used / total


# ----------------------------------------------------------------------------------------
# splits
# ----------------------------------------------------------------------------------------
def _split_count(name: str, value, n: int) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected a fraction in [0, 1) or a count, got {value!r}")
    if isinstance(value, (int, np.integer)):
        if value < 0:
            raise ValueError(f"{name}: expected a count >= 0, got {int(value)}")
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name}: expected a fraction in [0, 1), got {value}")
        return math.ceil(value * n - 1e-9)  # a non-zero fraction of a non-empty set gets >= 1 sample
    raise TypeError(f"{name}: expected a fraction in [0, 1) or a count, got {type(value).__name__} {value!r}")


def train_val_test_split(n_or_arrays, val=0.1, test=0.1, seed=0, shuffle: bool = True):
    """Split samples into (train, val, test).

    Parameters
    ----------
    n_or_arrays : int, ndarray, or tuple of ndarray
        A sample count (batches are int64 index arrays), one array (batches are its rows), or
        arrays with the same first dimension N (batches are tuples of their rows).
    val, test : float in [0, 1) or int, default 0.1
        Fractions (rounded up) or sample counts.
    seed : int, numpy.random.Generator or None, default 0
    shuffle : bool, default True
        With False the split is contiguous (train first, then val, then test), as time series
        and language-model corpora need.

    Returns
    -------
    (train, val, test)
        Index arrays for an int, arrays for one ndarray, tuples of arrays for a tuple.

    Raises
    ------
    ValueError
        When val + test leave no training sample.
    """
    n, arrays, kind = _as_data(n_or_arrays)
    n_val, n_test = _split_count("val", val, n), _split_count("test", test, n)
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(
            f"val, test: {n_val} validation + {n_test} test samples leave no training samples out of {n}; "
            f"use smaller val/test or more data"
        )
    order = _rng(seed).permutation(n) if shuffle else np.arange(n)
    parts = (order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:])
    return tuple(_take(p, arrays, kind) for p in parts)


# ----------------------------------------------------------------------------------------
# language-model streams for truncated BPTT
# ----------------------------------------------------------------------------------------
class LMStream:
    """Contiguous language-model batches, as char-rnn makes them.

    The id sequence is cut into ``batch_size`` equal contiguous streams; batch ``k`` holds
    steps ``[k*seq_len, (k+1)*seq_len)`` of every stream, and ``y`` is ``x`` shifted by one
    token. Row ``b`` of batch ``k+1`` continues row ``b`` of batch ``k``, so the caller carries
    the final hidden state of one batch into the next (truncated back-propagation through time).
    Unlike char-rnn, the very last target is the true next token rather than a wrap to the
    first, so the corpus needs ``batch_size * seq_len + 1`` ids; the tail that does not fill a
    whole batch is dropped.

    Iterating yields ``(x, y)`` from the current position to the end of the pass; the position
    then rewinds, so the next ``for`` loop is a new epoch. ``reset()`` rewinds early;
    ``stream[k]`` is batch k; ``len()`` is the number of batches per pass.

    Parameters
    ----------
    ids : array_like of int, shape (N,)
        The token ids of the whole corpus.
    batch_size : int
        B, the number of parallel streams.
    seq_len : int
        T, the steps per batch.
    batch_first : bool, default True
        ``x`` and ``y`` are int64 (B, T), else (T, B).

    Raises
    ------
    ValueError
        A corpus shorter than ``batch_size * seq_len + 1`` ids.
    """

    def __init__(self, ids, batch_size: int, seq_len: int, batch_first: bool = True):
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise ValueError(f"ids: expected a 1-D array of token ids, got shape {ids.shape}")
        if ids.size and ids.dtype.kind not in "iu":
            raise TypeError(f"ids: expected integer token ids, got dtype {ids.dtype}")
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.seq_len = _check_int("seq_len", seq_len, 1)
        self.batch_first = bool(batch_first)
        need = self.batch_size * self.seq_len + 1
        if len(ids) < need:
            raise ValueError(
                f"ids: the corpus has {len(ids)} tokens but batch_size={self.batch_size} x "
                f"seq_len={self.seq_len} needs at least {need} (one batch plus one target); "
                f"use a longer corpus or a smaller batch_size / seq_len"
            )
        self._num_batches = (len(ids) - 1) // (self.batch_size * self.seq_len)
        L = self._num_batches * self.seq_len  # steps per stream
        ids = ids.astype(np.int64, copy=False)
        self._x = ids[: self.batch_size * L].reshape(self.batch_size, L)
        self._y = ids[1: self.batch_size * L + 1].reshape(self.batch_size, L)
        self._pos = 0

    @property
    def stream_len(self) -> int:
        """Tokens per stream per pass."""
        return self._x.shape[1]

    @property
    def position(self) -> int:
        """Index of the batch the next ``next()`` returns."""
        return self._pos

    def __len__(self) -> int:
        return self._num_batches

    def reset(self) -> None:
        """Rewind to the first batch (start of every stream); reset the hidden state with it."""
        self._pos = 0

    def __getitem__(self, k: int):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"k: expected an int batch index, got {type(k).__name__} {k!r}")
        n = self._num_batches
        if not -n <= k < n:
            raise IndexError(f"k: expected a batch index in [{-n}, {n - 1}], got {int(k)}")
        k = int(k) % n
        s = slice(k * self.seq_len, (k + 1) * self.seq_len)
        x, y = self._x[:, s], self._y[:, s]
        if not self.batch_first:
            x, y = x.T, y.T
        return np.ascontiguousarray(x), np.ascontiguousarray(y)

    def __iter__(self):
        return self

    def __next__(self):
        if self._pos >= self._num_batches:
            self._pos = 0  # the pass is over; the next loop starts a new one
            raise StopIteration
        batch = self[self._pos]
        self._pos += 1
        return batch

    def __repr__(self) -> str:
        return (f"LMStream(batch_size={self.batch_size}, seq_len={self.seq_len}, batches={len(self)}, "
                f"batch_first={self.batch_first})")


# ----------------------------------------------------------------------------------------
# forecasting windows
# ----------------------------------------------------------------------------------------
def _as_series(series, name: str = "series") -> np.ndarray:
    arr = np.asarray(series)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[:, None]
    elif arr.ndim != 2:
        raise ValueError(f"{name}: expected shape (T,) or (T, F), got {arr.shape}")
    return arr


def sliding_windows(series, input_len: int, horizon: int, stride: int = 1, target_cols=None):
    """Forecasting pairs from a time series.

    Window ``i`` starts at ``s = i * stride``: ``X[i] = series[s : s+input_len]`` and
    ``Y[i] = series[s+input_len : s+input_len+horizon]``.

    Parameters
    ----------
    series : array_like of numbers, shape (T,) or (T, F)
        A 1-D series is one feature. NaN or inf raise.
    input_len : int
    horizon : int
        Steps to forecast.
    stride : int, default 1
    target_cols : sequence of int, optional
        The columns of ``Y`` (default: all F).

    Returns
    -------
    X : ndarray of float32, shape (N, input_len, F)
    Y : ndarray of float32, shape (N, horizon, F_out)
    """
    arr = _as_series(series)
    input_len = _check_int("input_len", input_len, 1)
    horizon = _check_int("horizon", horizon, 1)
    stride = _check_int("stride", stride, 1)
    T, F = arr.shape
    need = input_len + horizon
    if T < need:
        raise ValueError(
            f"series: has {T} steps but one window needs input_len + horizon = {input_len} + {horizon} = {need}; "
            f"use a longer series or shorter windows"
        )
    bad = ~np.isfinite(arr) if arr.dtype.kind == "f" else None
    if bad is not None and bad.any():
        t = int(np.argwhere(bad)[0][0])
        raise ValueError(f"series: contains NaN or inf at step {t}; fill or drop missing values first")
    cols = np.arange(F) if target_cols is None else np.asarray(target_cols)
    if cols.ndim != 1 or cols.dtype.kind not in "iu" or cols.size == 0:
        raise TypeError(f"target_cols: expected a non-empty list of column indices, got {target_cols!r}")
    if cols.min() < -F or cols.max() >= F:
        raise ValueError(f"target_cols: expected indices in [0, {F - 1}], got {cols.tolist()}")
    n = (T - need) // stride + 1
    starts = np.arange(n) * stride
    x_idx = starts[:, None] + np.arange(input_len)[None, :]
    y_idx = starts[:, None] + input_len + np.arange(horizon)[None, :]
    data = arr.astype(np.float32, copy=False)
    return data[x_idx], data[y_idx][:, :, cols]


def _check_finite(arr: np.ndarray, name: str) -> None:
    """NaN or Inf would make every statistic (and every scaled value) NaN without a word."""
    bad = ~np.isfinite(arr)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name}: expected finite values, got {arr[where]} at index {where}")


def standardize(x, mean=None, std=None, eps: float = 1e-8):
    """Zero-mean, unit-variance per feature over axis 0 (time or samples).

    A constant feature (std < eps) keeps std 1, so it is centred, not divided by zero.

    Parameters
    ----------
    x : array_like of numbers, shape (T, ...)
    mean, std : array_like, shape ``x.shape[1:]``, optional
        The training set's statistics, to scale validation and test data the same way (give
        both or neither).
    eps : float, default 1e-8

    Returns
    -------
    scaled : ndarray of float32, shape of ``x``
    mean, std : ndarray of float32, shape ``x.shape[1:]``
    """
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"x: expected a numeric array, got dtype {arr.dtype}")
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise ValueError(f"x: expected at least one step along axis 0, got shape {arr.shape}")
    arr = arr.astype(np.float32, copy=False)
    _check_finite(arr, "x")
    if (mean is None) != (std is None):
        raise ValueError("mean, std: pass both (to reuse training statistics) or neither")
    if mean is None:
        mean = arr.mean(axis=0, dtype=np.float64).astype(np.float32)
        std = arr.std(axis=0, dtype=np.float64).astype(np.float32)
        std = np.where(std < eps, np.float32(1.0), std).astype(np.float32)
    else:
        mean = np.asarray(mean, dtype=np.float32)
        std = np.asarray(std, dtype=np.float32)
        if mean.shape != arr.shape[1:] or std.shape != arr.shape[1:]:
            raise ValueError(f"mean, std: expected shape {arr.shape[1:]} (the per-step shape of x), "
                             f"got {mean.shape} and {std.shape}")
        _check_finite(mean, "mean")
        _check_finite(std, "std")
        if np.any(std <= 0):
            raise ValueError(f"std: expected positive values, got min {float(std.min())}")
    return (arr - mean) / std, mean, std


def unstandardize(scaled, mean, std) -> np.ndarray:
    """Inverse of :func:`standardize` (e.g. to read forecasts in the original units).

    Parameters
    ----------
    scaled : array_like
    mean, std : array_like
        What :func:`standardize` returned (broadcast against ``scaled``).

    Returns
    -------
    ndarray of float32
    """
    return (np.asarray(scaled, dtype=np.float32) * np.asarray(std, dtype=np.float32)
            + np.asarray(mean, dtype=np.float32))
