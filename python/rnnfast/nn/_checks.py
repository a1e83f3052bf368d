"""Input validation shared by the layers: clear errors naming the argument, expected and actual."""
from __future__ import annotations

import numbers

import numpy as np


# The kernels index a layer's sizes with 32-bit ints (and its gate rows, G * hidden_size, too).
MAX_SIZE = 2**31 - 1
MAX_HIDDEN = 2**28


def check_int(value, name: str, minimum: int | None = 1, where: str | None = None, allow_none: bool = False,
              maximum: int | None = None):
    """The one integer check of the package: TypeError for a non-integer (bools are not integers),
    ValueError outside [minimum, maximum] (None: unbounded); ``where`` prefixes the message."""
    if value is None and allow_none:
        return None
    at = f"{where}: " if where else ""
    want = "an int" + ("" if minimum is None else f" >= {minimum}") + ("" if maximum is None else f" and <= {maximum}")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{at}{name}: expected {want}, got {type(value).__name__} {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{at}{name}: expected {want}, got {value}")
    return int(value)


def private_copy(arr: np.ndarray, given) -> np.ndarray:
    """``arr`` itself, or a copy when it shares memory with the caller's ``given`` array: what a
    backward reads must not change when the caller edits their input in place."""
    return arr.copy() if isinstance(given, np.ndarray) and np.may_share_memory(arr, given) else arr


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


WEIGHT_FORMATS = ("float32", "bfloat16", "int8")


def check_weights(value, name: str = "weights") -> str:
    """An inference weight format name (see RNNBase.set_inference_weights)."""
    if not isinstance(value, str) or value not in WEIGHT_FORMATS:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, WEIGHT_FORMATS))}, got {value!r}")
    return value
