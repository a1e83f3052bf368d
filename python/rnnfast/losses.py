"""Losses that return their value and their gradient together: softmax cross-entropy, MSE and CTC.

``cross_entropy`` fuses log-softmax with the negative log-likelihood so large logits stay
finite and the gradient (softmax - target) costs one pass. Logits have the classes last:
(N, C) for many-to-one, (B, T, C) for per-timestep targets (any (..., C) works). The loss
value is accumulated in float64; the gradient has the logits' dtype (float32 normally).
``ctc_loss`` (connectionist temporal classification, in :mod:`rnnfast.ctc` beside its decoders)
takes time-major raw scores (T, B, C) and unaligned targets.
"""
from __future__ import annotations

import numpy as np

from .ctc import ctc_loss

__all__ = ["cross_entropy", "mse_loss", "ctc_loss", "CrossEntropyLoss", "MSELoss", "CTCLoss"]

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction, where: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{where}: reduction: expected one of {_REDUCTIONS}, got {reduction!r}")
    return reduction


def _float_array(x, name: str, where: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind != "f":
        raise TypeError(f"{where}: {name}: expected a floating-point array, got dtype {arr.dtype}")
    return arr if arr.dtype in (np.float32, np.float64) else arr.astype(np.float32)


def cross_entropy(logits, target, ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0, mask=None):
    """Softmax cross-entropy over the last axis of ``logits``, with its gradient.

    Fuses log-softmax and the negative log-likelihood, so large logits stay finite.

    Parameters
    ----------
    logits : ndarray of float32 or float64, shape (..., C)
        Unnormalised scores, classes last: (N, C) for many-to-one, (B, T, C) per time step.
        Other floating dtypes are converted to float32.
    target : ndarray of int, shape ``logits.shape[:-1]``
        Class ids in [0, C), or ``ignore_index``.
    ignore_index : int, default -100
        Target value that contributes nothing (padding).
    reduction : {'mean', 'sum', 'none'}, default 'mean'
        'mean' divides by the number of counted elements (the sum of the mask weights), as
        PyTorch does; with nothing counted it is nan and the gradient zero. 'sum' sums. 'none'
        returns the per-element losses, and the gradient is that of their sum.
    label_smoothing : float in [0, 1], default 0.0
        Mixes the one-hot target with the uniform distribution, as in PyTorch.
    mask : ndarray of bool or float, shape ``target.shape``, optional
        Zero entries contribute nothing; float entries weight the elements.

    Returns
    -------
    loss : float, or ndarray of logits' dtype with shape ``target.shape`` for reduction='none'
        Accumulated in float64.
    grad_logits : ndarray, shape and dtype of ``logits``
        The gradient of the loss with respect to ``logits``.

    Raises
    ------
    TypeError
        Non-floating logits, non-integer target, non-numeric mask.
    ValueError
        Mismatched shapes, class ids out of range, unknown reduction, label_smoothing outside [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from rnnfast.losses import cross_entropy
    >>> loss, grad = cross_entropy(np.zeros((2, 3), np.float32), np.array([0, 2]))
    >>> round(loss, 4), grad.shape
    (1.0986, (2, 3))
    """
    where = "cross_entropy"
    logits = _float_array(logits, "logits", where)
    if logits.ndim < 2:
        raise ValueError(f"{where}: logits: expected shape (N, C) or (B, T, C), got {logits.shape}")
    num_classes = logits.shape[-1]
    if num_classes < 1:
        raise ValueError(f"{where}: logits: expected at least one class, got shape {logits.shape}")
    target = np.asarray(target)
    if target.dtype.kind not in "iu":
        raise TypeError(f"{where}: target: expected an integer array of class ids, got dtype {target.dtype}")
    if target.shape != logits.shape[:-1]:
        raise ValueError(f"{where}: target: expected shape {logits.shape[:-1]} (logits shape without the class "
                         f"axis), got {target.shape}")
    _check_reduction(reduction, where)
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"{where}: label_smoothing: expected a value in [0, 1], got {label_smoothing}")

    t = target.reshape(-1)
    counted = t != ignore_index
    weight = None
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != target.shape:
            raise ValueError(f"{where}: mask: expected shape {target.shape} (the target's), got {mask.shape}")
        if mask.dtype.kind not in "biuf":
            raise TypeError(f"{where}: mask: expected a bool or numeric array, got dtype {mask.dtype}")
        m = mask.reshape(-1)
        counted &= m != 0
        if m.dtype.kind != "b":
            weight = np.where(counted, m, 0).astype(np.float64)
    bad = counted & ((t < 0) | (t >= num_classes))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{where}: target: expected class ids in [0, {num_classes}) or ignore_index="
                         f"{ignore_index}, got {int(t[i])} at flat position {i}")
    all_counted = weight is None and bool(counted.all())
    if weight is None:
        weight = counted.astype(np.float64)

    x = logits.reshape(-1, num_classes)
    n = x.shape[0]
    rows = np.arange(n)
    t_safe = t if all_counted else np.where(counted, t, 0)

    # z = x - max(x) <= 0, so exp(z) cannot overflow; z becomes the gradient buffer.
    z = x - x.max(axis=1, keepdims=True)
    picked = z[rows, t_safe].astype(np.float64)
    z_mean = z.mean(axis=1, dtype=np.float64) if eps else None
    np.exp(z, out=z)
    s = z.sum(axis=1, dtype=np.float64)
    lse = np.log(s)
    per = lse - picked  # -log p(target)
    if eps:
        per = (1.0 - eps) * per + eps * (lse - z_mean)  # smoothing term: mean over classes of -log p
    per = np.where(weight != 0, per * weight, 0.0)  # ignored rows contribute nothing, even a NaN (as in torch)

    if reduction == "mean":
        denom = weight.sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            loss = float(per.sum() / denom)
        scale = weight / denom if denom > 0 else np.zeros_like(weight)
    elif reduction == "sum":
        loss = float(per.sum())
        scale = weight
    else:
        loss = per.astype(logits.dtype).reshape(target.shape)
        scale = weight

    # grad = scale * (softmax - (1 - eps) * onehot - eps / C)
    z *= (scale / s).astype(z.dtype)[:, None]
    z[rows, t_safe] -= ((1.0 - eps) * scale).astype(z.dtype)
    if eps:
        z -= (eps / num_classes * scale).astype(z.dtype)[:, None]
    if not all_counted:
        z[weight == 0] = 0.0
    return loss, z.reshape(logits.shape)


def mse_loss(pred, target, reduction: str = "mean"):
    """Mean squared error, with its gradient.

    Parameters
    ----------
    pred : ndarray of float32 or float64, any shape
        Predictions (other floating dtypes are converted to float32).
    target : ndarray of float, shape ``pred.shape``
        Targets; shapes must match exactly (no broadcasting).
    reduction : {'mean', 'sum', 'none'}, default 'mean'
        Mean or sum over all elements (accumulated in float64), or the per-element squares.

    Returns
    -------
    loss : float, or ndarray of ``pred.shape`` for reduction='none'
    grad_pred : ndarray, shape and dtype of ``pred``
        The gradient of the loss (of its sum for 'none') with respect to ``pred``.

    Raises
    ------
    TypeError
        Non-floating input.
    ValueError
        Mismatched shapes or an unknown reduction.
    """
    where = "mse_loss"
    pred = _float_array(pred, "pred", where)
    target = _float_array(target, "target", where)
    if target.shape != pred.shape:
        raise ValueError(f"{where}: target: expected shape {pred.shape} (the pred's), got {target.shape}")
    _check_reduction(reduction, where)
    diff = np.subtract(pred, target, dtype=pred.dtype)
    if reduction == "none":
        loss = np.square(diff)
        diff *= 2
        return loss, diff
    total = float(np.sum(np.square(diff, dtype=np.float64)))
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            loss = total / diff.size if diff.size else float("nan")
        diff *= pred.dtype.type(2.0 / diff.size) if diff.size else 0
        return loss, diff
    diff *= 2
    return total, diff


class _Loss:
    """Callable wrapper: ``loss = crit(pred, target)`` then ``grad = crit.backward()``."""

    def __init__(self, reduction: str):
        self.reduction = _check_reduction(reduction, type(self).__name__)
        self._grad = None

    def _compute(self, *args, **kwargs):
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        loss, self._grad = self._compute(*args, **kwargs)
        return loss

    forward = __call__

    def backward(self, grad_loss=None):
        """Gradient of the last loss with respect to its input.

        Parameters
        ----------
        grad_loss : float or ndarray, optional
            Multiplies the gradient: a scalar, or for reduction='none' an array shaped like the
            per-element loss.

        Returns
        -------
        ndarray
            Shaped like the loss's input (``logits`` or ``pred``). Each loss value has one backward.
        """
        if self._grad is None:
            raise RuntimeError(f"{type(self).__name__}.backward: call the loss before backward()")
        grad, self._grad = self._grad, None
        if grad_loss is None:
            return grad
        gl = np.asarray(grad_loss, dtype=grad.dtype)
        if gl.ndim == 0:
            return grad * gl
        if self.reduction != "none":
            raise ValueError(f"{type(self).__name__}.backward: grad_loss: expected a scalar for reduction="
                             f"{self.reduction!r}, got shape {gl.shape}")
        return self._scale_per_element(grad, gl)

    def _scale_per_element(self, grad, gl):
        raise NotImplementedError


class CrossEntropyLoss(_Loss):
    """Class form of :func:`cross_entropy`: ``loss = crit(logits, target, mask=None)``, then
    ``grad_logits = crit.backward()``.

    Parameters
    ----------
    ignore_index : int, default -100
    reduction : {'mean', 'sum', 'none'}, default 'mean'
    label_smoothing : float in [0, 1], default 0.0
        As in :func:`cross_entropy`.
    """

    def __init__(self, *, ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__(reduction)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def _compute(self, logits, target, mask=None):
        return cross_entropy(logits, target, self.ignore_index, self.reduction, self.label_smoothing, mask)

    def _scale_per_element(self, grad, gl):
        if gl.shape != grad.shape[:-1]:
            raise ValueError(f"CrossEntropyLoss.backward: grad_loss: expected shape {grad.shape[:-1]}, got {gl.shape}")
        return grad * gl[..., None]


class MSELoss(_Loss):
    """Class form of :func:`mse_loss`: ``loss = crit(pred, target)``, then ``grad = crit.backward()``.

    Parameters
    ----------
    reduction : {'mean', 'sum', 'none'}, default 'mean'
        As in :func:`mse_loss`.
    """

    def __init__(self, *, reduction: str = "mean"):
        super().__init__(reduction)

    def _compute(self, pred, target):
        return mse_loss(pred, target, self.reduction)

    def _scale_per_element(self, grad, gl):
        if gl.shape != grad.shape:
            raise ValueError(f"MSELoss.backward: grad_loss: expected shape {grad.shape}, got {gl.shape}")
        return grad * gl


class CTCLoss(_Loss):
    """Class form of :func:`ctc_loss`: ``loss = crit(logits, targets, input_lengths, target_lengths)``,
    then ``grad_logits = crit.backward()``.

    Parameters
    ----------
    blank : int, default 0
    reduction : {'mean', 'sum', 'none'}, default 'mean'
    zero_infinity : bool, default False
        As in :func:`ctc_loss`.
    """

    def __init__(self, *, blank: int = 0, reduction: str = "mean", zero_infinity: bool = False):
        super().__init__(reduction)
        self.blank = blank
        self.zero_infinity = zero_infinity

    def _compute(self, logits, targets, input_lengths, target_lengths):
        return ctc_loss(logits, targets, input_lengths, target_lengths, self.blank, self.reduction,
                        self.zero_infinity)

    def _scale_per_element(self, grad, gl):
        if gl.shape != (grad.shape[1],):
            raise ValueError(f"CTCLoss.backward: grad_loss: expected shape ({grad.shape[1]},), got {gl.shape}")
        return grad * gl[None, :, None]
