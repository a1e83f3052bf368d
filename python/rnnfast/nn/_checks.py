"""Input validation shared by the layers: clear errors naming the argument, expected and actual."""
from __future__ import annotations

import numbers

import numpy as np


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    return int(value)


def as_float_array(value, name: str, shape: tuple | None = None) -> np.ndarray:
    """A float32 array (floating input of any precision is converted; integers are refused)."""
    arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    if arr.dtype.kind != "f":
        raise TypeError(f"{name}: expected a floating-point array, got dtype {arr.dtype}")
    if shape is not None and arr.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {arr.shape}")
    return arr.astype(np.float32, copy=False)


def as_lengths(value, batch: int, max_len: int) -> np.ndarray:
    """Per-sample lengths as int32, each in [1, max_len]."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"lengths: expected an integer array, got dtype {arr.dtype}")
    if arr.shape != (batch,):
        raise ValueError(f"lengths: expected shape ({batch},) (one length per sample), got {arr.shape}")
    if arr.size and (arr.min() < 1 or arr.max() > max_len):
        bad = int(arr.min()) if arr.min() < 1 else int(arr.max())
        raise ValueError(f"lengths: expected values in [1, {max_len}] (the sequence length), got {bad}")
    return np.ascontiguousarray(arr, dtype=np.int32)
