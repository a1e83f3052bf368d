"""Input validation shared by the layers: clear errors naming the argument, expected and actual."""
from __future__ import annotations

import numbers

import numpy as np


def check_int(value, name: str, minimum: int = 1, where: str | None = None, allow_none: bool = False):
    """The one integer check of the layers and models: TypeError for a non-integer (bools are not
    integers), ValueError below ``minimum``; ``where`` prefixes the message."""
    if value is None and allow_none:
        return None
    at = f"{where}: " if where else ""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{at}{name}: expected an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{at}{name}: expected an int >= {minimum}, got {value}")
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
