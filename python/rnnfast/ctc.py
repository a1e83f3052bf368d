"""Connectionist temporal classification: the loss (with its gradient) and two streaming decoders.

``ctc_loss`` follows ``torch.nn.functional.ctc_loss`` (Graves et al. 2006): time-major scores
(T, B, C), targets padded (B, S) or concatenated 1-D, PyTorch's reductions and infinite losses,
except that it takes *raw* scores: the log-softmax is applied inside and the gradient is the one
with respect to the raw scores. The forward-backward recursions run in log space in float64,
vectorised over the batch and the extended label sequence (one numpy pass per time step).

The decoders are objects you feed frames as they arrive (one frame (C,) or a chunk (N, C)) and
ask for the current best label sequence: :class:`GreedyDecoder` (best path: collapse repeats,
drop blanks) and :class:`PrefixBeamDecoder` (prefix beam search: sums the probability of every
alignment of a prefix, keeping the ``beam_width`` best prefixes).
"""
from __future__ import annotations

import math

import numpy as np

from .nn._checks import check_int

__all__ = ["ctc_loss", "GreedyDecoder", "PrefixBeamDecoder", "greedy_decode", "prefix_beam_search"]

_NEG_INF = -np.inf


def _log_softmax(x: np.ndarray) -> np.ndarray:
    """float64 log-softmax over the last axis."""
    x = np.asarray(x, dtype=np.float64)
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _int_array(value, name: str, where: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{where}: {name}: expected an integer array, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _check_lengths(value, name: str, batch: int, low: int, high: int, what: str, where: str) -> np.ndarray:
    arr = _int_array(value, name, where)
    if arr.shape != (batch,):
        raise ValueError(f"{where}: {name}: expected shape ({batch},) (one length per sample), got {arr.shape}")
    bad = np.flatnonzero((arr < low) | (arr > high))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{where}: {name}: expected values in [{low}, {high}] ({what}), got {int(arr[i])} "
                         f"for sample {i}")
    return arr


def _padded_targets(targets, target_lengths, batch: int, num_classes: int, blank: int, where: str):
    """Targets as a (B, S) int64 array (entries past a sample's length are ignored) and the lengths."""
    targets = _int_array(targets, "targets", where)
    if targets.ndim == 2:
        if targets.shape[0] != batch:
            raise ValueError(f"{where}: targets: expected shape ({batch}, S) (padded, one row per sample), "
                             f"got {targets.shape}")
        lengths = _check_lengths(target_lengths, "target_lengths", batch, 0, targets.shape[1],
                                 "the padded targets' width", where)
        padded = targets
    elif targets.ndim == 1:
        lengths = _check_lengths(target_lengths, "target_lengths", batch, 0, targets.shape[0],
                                 "the concatenated targets' length", where)
        if int(lengths.sum()) != targets.shape[0]:
            raise ValueError(f"{where}: target_lengths: expected them to sum to len(targets) = {targets.shape[0]} "
                             f"(concatenated 1-D targets), got sum {int(lengths.sum())}")
        padded = np.zeros((batch, int(lengths.max(initial=0))), np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        for b in range(batch):
            padded[b, :lengths[b]] = targets[starts[b]:starts[b] + lengths[b]]
    else:
        raise ValueError(f"{where}: targets: expected shape (B, S) (padded) or (N,) (concatenated), "
                         f"got {targets.shape}")
    width = int(lengths.max(initial=0))
    padded = padded[:, :width]
    valid = np.arange(width)[None, :] < lengths[:, None]
    bad = valid & ((padded < 0) | (padded >= num_classes) | (padded == blank))
    if bad.any():
        b, s = (int(i[0]) for i in np.nonzero(bad))
        raise ValueError(f"{where}: targets: expected labels in [0, {num_classes}) other than blank={blank}, "
                         f"got {int(padded[b, s])} at sample {b}, position {s}")
    return np.where(valid, padded, blank), lengths


def _logsumexp3(a, b, c):
    """Element-wise log(e^a + e^b + e^c), exact at -inf."""
    m = np.maximum(np.maximum(a, b), c)
    m_safe = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(a - m_safe) + np.exp(b - m_safe) + np.exp(c - m_safe)) + m_safe


def _forward_backward(log_probs, ext, ext_len, input_lengths):
    """Log-space alpha and beta (T, B, L), both including the frame's own emission, and log p(target).

    ``ext`` (B, L) is the extended label sequence blank, l1, blank, l2, ..., blank; a sample uses
    its first ``ext_len`` positions and its first ``input_lengths`` frames.
    """
    T, B, _ = log_probs.shape
    L = ext.shape[1]
    rows = np.arange(B)[:, None]
    emit = log_probs[:, rows, ext]                                          # (T, B, L)
    pos = np.arange(L)[None, :]
    inside = pos < ext_len[:, None]
    # s - 2 is reachable when position s is a label different from the label at s - 2
    skip = np.zeros((B, L), bool)
    skip[:, 2:] = (ext[:, 2:] != ext[:, :-2]) & (pos[:, 2:] % 2 == 1)
    neg = np.full((B, L), _NEG_INF)

    alpha = np.full((T, B, L), _NEG_INF)
    if T:
        start = np.where(pos < np.minimum(2, ext_len)[:, None], emit[0], _NEG_INF)
        alpha[0] = np.where((input_lengths > 0)[:, None], start, _NEG_INF)
    for t in range(1, T):
        prev = alpha[t - 1]
        one = np.concatenate([neg[:, :1], prev[:, :-1]], axis=1)
        two = np.where(skip, np.concatenate([neg[:, :2], prev[:, :-2]], axis=1), _NEG_INF)
        a = _logsumexp3(prev, one, two) + emit[t]
        alpha[t] = np.where(inside & (t < input_lengths)[:, None], a, _NEG_INF)

    beta = np.full((T, B, L), _NEG_INF)
    last = input_lengths - 1
    ends = (pos == ext_len[:, None] - 1) | (pos == ext_len[:, None] - 2)
    skip_next = np.zeros((B, L), bool)            # s + 2 reachable from s (the mirror of skip)
    skip_next[:, :-2] = skip[:, 2:]
    for t in range(T - 1, -1, -1):
        init = np.where(ends & inside, emit[t], _NEG_INF)
        if t + 1 < T:
            nxt = beta[t + 1]
            one = np.concatenate([nxt[:, 1:], neg[:, :1]], axis=1)
            two = np.where(skip_next, np.concatenate([nxt[:, 2:], neg[:, :2]], axis=1), _NEG_INF)
            rec = _logsumexp3(nxt, one, two) + emit[t]
        else:
            rec = neg
        beta[t] = np.where((t == last)[:, None], init, np.where((t < last)[:, None] & inside, rec, _NEG_INF))

    # log p = logsumexp over the two end positions of alpha at each sample's last frame
    a_last = alpha[np.maximum(last, 0), np.arange(B)] if T else np.full((B, L), _NEG_INF)   # (B, L)
    a_end = np.where(ends & inside, a_last, _NEG_INF)
    m = a_end.max(axis=1)
    m_safe = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        log_p = np.log(np.exp(a_end - m_safe[:, None]).sum(axis=1)) + m_safe
    log_p = np.where(input_lengths > 0, log_p, np.where(ext_len == 1, 0.0, _NEG_INF))
    return alpha, beta, emit, log_p


def ctc_loss(logits, targets, input_lengths, target_lengths, blank: int = 0, reduction: str = "mean",
             zero_infinity: bool = False):
    """CTC loss of raw per-frame scores, with its gradient with respect to those scores.

    Parameters
    ----------
    logits : ndarray of float32 or float64, shape (T, B, C)
        Unnormalised scores, time-major (as torch's ``log_probs``, but before the log-softmax,
        which is applied here). Other floating dtypes are converted to float32.
    targets : ndarray of int, shape (B, S) padded, or (sum(target_lengths),) concatenated
        Label ids in [0, C), never ``blank``; padding past a sample's length is ignored.
    input_lengths : ndarray of int, shape (B,)
        Frames used per sample, in [0, T]; later frames get a zero gradient.
    target_lengths : ndarray of int, shape (B,)
        Labels per sample, in [0, S] (padded) or summing to len(targets) (concatenated).
    blank : int, default 0
        The blank class, in [0, C).
    reduction : {'mean', 'sum', 'none'}, default 'mean'
        As in torch: 'mean' divides each sample's loss by its target length (at least 1) and
        averages over the batch; 'sum' sums; 'none' returns the per-sample losses (the gradient
        is that of their sum).
    zero_infinity : bool, default False
        Impossible alignments (input too short for the target) give an infinite loss and a NaN
        gradient; with True, their loss and gradient are zero instead (as in torch).

    Returns
    -------
    loss : float, or ndarray of the logits' dtype with shape (B,) for reduction='none'
        Accumulated in float64.
    grad_logits : ndarray, shape and dtype of ``logits``

    Raises
    ------
    TypeError
        Non-floating logits, non-integer targets or lengths, non-bool zero_infinity.
    ValueError
        Wrong shapes, a label equal to ``blank`` or out of range, lengths out of range, unknown
        reduction, ``blank`` outside [0, C).

    Examples
    --------
    >>> import numpy as np
    >>> from rnnfast.losses import ctc_loss
    >>> loss, grad = ctc_loss(np.zeros((4, 1, 3), np.float32), np.array([[1, 2]]), np.array([4]), np.array([2]))
    >>> round(loss, 4), grad.shape
    (0.8432, (4, 1, 3))
    """
    where = "ctc_loss"
    x = np.asarray(logits)
    if x.dtype.kind != "f":
        raise TypeError(f"{where}: logits: expected a floating-point array, got dtype {x.dtype}")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32)
    if x.ndim != 3 or x.shape[2] < 1:
        raise ValueError(f"{where}: logits: expected shape (T, B, C) (time-major, C >= 1 classes), got {x.shape}")
    T, B, C = x.shape
    blank = check_int(blank, "blank", 0, where, maximum=C - 1)
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{where}: reduction: expected one of ('mean', 'sum', 'none'), got {reduction!r}")
    if not isinstance(zero_infinity, (bool, np.bool_)):
        raise TypeError(f"{where}: zero_infinity: expected a bool, got {type(zero_infinity).__name__}")
    in_len = _check_lengths(input_lengths, "input_lengths", B, 0, T, "the number of frames T", where)
    labels, tgt_len = _padded_targets(targets, target_lengths, B, C, blank, where)

    S = labels.shape[1]
    ext = np.full((B, 2 * S + 1), blank, np.int64)
    ext[:, 1::2] = labels
    log_probs = _log_softmax(x)
    alpha, beta, emit, log_p = _forward_backward(log_probs, ext, 2 * tgt_len + 1, in_len)
    nll = -log_p

    # occupation of extended position s at frame t: alpha * beta / y(ext_s) / p (<= 1, no overflow)
    infinite = np.isinf(nll)
    finite_nll = np.where(infinite, 0.0, nll)
    occ = np.exp(alpha + beta - emit + finite_nll[None, :, None])
    per_class = np.zeros((T, B, C))
    batch = np.arange(B)
    for s in range(ext.shape[1]):   # scatter into the classes; one (sample, class) pair per sample
        per_class[:, batch, ext[:, s]] += occ[:, :, s]
    grad = np.exp(log_probs) - per_class
    frames = np.arange(T)[:, None] < in_len[None, :]
    grad = np.where(frames[:, :, None], grad, 0.0)

    if zero_infinity:
        nll = np.where(infinite, 0.0, nll)
        grad[:, infinite, :] = 0.0
    else:
        grad[:, infinite, :] = np.where(frames[:, infinite, None], np.nan, 0.0)

    if reduction == "mean":
        weight = 1.0 / (np.maximum(tgt_len, 1) * B)
        loss = float(np.sum(nll * weight))
    elif reduction == "sum":
        weight = np.ones(B)
        loss = float(nll.sum())
    else:
        weight = np.ones(B)
        loss = nll.astype(x.dtype)
    grad *= weight[None, :, None]
    return loss, grad.astype(x.dtype)


# Decoders --------------------------------------------------------------------------------------------
_SCORES = ("logits", "log_probs")


def _logaddexp(a: float, b: float) -> float:
    """log(e^a + e^b) for Python floats (numpy's ufunc costs more than the arithmetic here)."""
    if a < b:
        a, b = b, a
    if b == _NEG_INF:
        return a
    return a + math.log1p(math.exp(b - a))


class _Decoder:
    """Shared frame checks: the class count is fixed by ``num_classes`` or by the first frame."""

    def __init__(self, blank: int, num_classes, where: str):
        self._where = where
        self.num_classes = check_int(num_classes, "num_classes", 1, where, allow_none=True)
        self.blank = check_int(blank, "blank", 0, where,
                               maximum=None if self.num_classes is None else self.num_classes - 1)
        self.frames_seen = 0

    def _frames(self, frames) -> np.ndarray:
        arr = np.asarray(frames)
        if arr.dtype.kind != "f":
            raise TypeError(f"{self._where}.feed: frames: expected a floating-point array, got dtype {arr.dtype}")
        if arr.ndim not in (1, 2) or arr.shape[-1] < 1:
            raise ValueError(f"{self._where}.feed: frames: expected shape (C,) (one frame) or (N, C) (a chunk), "
                             f"got {arr.shape}")
        if self.num_classes is None:
            if self.blank >= arr.shape[-1]:
                raise ValueError(f"{self._where}: blank: expected a class id in [0, {arr.shape[-1]}) "
                                 f"(the frames have {arr.shape[-1]} classes), got {self.blank}")
            self.num_classes = arr.shape[-1]
        elif arr.shape[-1] != self.num_classes:
            raise ValueError(f"{self._where}.feed: frames: expected {self.num_classes} classes (last axis), "
                             f"got shape {arr.shape}")
        arr = arr.reshape(-1, self.num_classes)
        self.frames_seen += arr.shape[0]
        return arr


class GreedyDecoder(_Decoder):
    """Best-path CTC decoding on a stream: the most likely class per frame, repeats collapsed,
    blanks dropped. Feed raw scores, log-probabilities or probabilities (the argmax is the same).

    Parameters
    ----------
    blank : int, default 0
    num_classes : int, optional
        Fixed by the first frame when not given.

    Examples
    --------
    >>> import numpy as np
    >>> dec = GreedyDecoder(blank=0)
    >>> dec.feed(np.eye(3)[[1, 1, 0]])
    [1]
    >>> dec.feed(np.eye(3)[1])        # one more frame: a new 1 after the blank
    [1, 1]
    """

    def __init__(self, blank: int = 0, num_classes: int | None = None):
        super().__init__(blank, num_classes, "GreedyDecoder")
        self.reset()

    def reset(self) -> None:
        """Forget the stream: start a new utterance."""
        self._labels: list[int] = []
        self._last = -1
        self.frames_seen = 0

    def feed(self, frames) -> list[int]:
        """Add frames to the stream.

        Parameters
        ----------
        frames : ndarray of float, shape (C,) (one frame) or (N, C) (a chunk)

        Returns
        -------
        list of int
            The current best label sequence.
        """
        ids = self._frames(frames).argmax(axis=1)
        prev = np.concatenate([[self._last], ids[:-1]])
        keep = (ids != prev) & (ids != self.blank)
        self._labels.extend(int(i) for i in ids[keep])
        if ids.size:
            self._last = int(ids[-1])
        return self.best()

    def best(self) -> list[int]:
        """The current hypothesis.

        Returns
        -------
        list of int
            A copy: later frames do not change it.
        """
        return list(self._labels)


class PrefixBeamDecoder(_Decoder):
    """CTC prefix beam search on a stream (Graves 2012; Hannun et al. 2014, without a language model).

    Each prefix carries the probability of all its alignments so far, split into those ending in
    a blank and those ending in its last label; each frame extends every kept prefix by every
    class, merges equal prefixes and keeps the ``beam_width`` most probable. With a beam as wide
    as the number of prefixes this is exact: the best hypothesis is the most probable label
    sequence, not the most probable path.

    Parameters
    ----------
    beam_width : int, default 8
    blank : int, default 0
    scores : {'logits', 'log_probs'}, default 'logits'
        What you feed: raw scores (a log-softmax is applied per frame) or log-probabilities.
    top_k : int, optional
        Extend only by the ``top_k`` most probable classes of each frame (faster for large
        alphabets); None considers every class.
    num_classes : int, optional
        Fixed by the first frame when not given.

    Examples
    --------
    >>> import numpy as np
    >>> dec = PrefixBeamDecoder(beam_width=4, scores="log_probs")
    >>> dec.feed(np.log([[0.4, 0.6], [0.4, 0.6]]))   # 'a a', 'a -', '- a' all read as [1]
    [1]
    """

    def __init__(self, beam_width: int = 8, blank: int = 0, scores: str = "logits", top_k: int | None = None,
                 num_classes: int | None = None):
        super().__init__(blank, num_classes, "PrefixBeamDecoder")
        self.beam_width = check_int(beam_width, "beam_width", 1, "PrefixBeamDecoder")
        if scores not in _SCORES:
            raise ValueError(f"PrefixBeamDecoder: scores: expected one of {_SCORES}, got {scores!r}")
        self.scores = scores
        self.top_k = check_int(top_k, "top_k", 1, "PrefixBeamDecoder", allow_none=True)
        self.reset()

    def reset(self) -> None:
        """Forget the stream: start a new utterance."""
        # prefix -> [log P(alignments ending in blank), log P(alignments ending in the last label)]
        self._beams: dict[tuple, list] = {(): [0.0, _NEG_INF]}
        self.frames_seen = 0

    def feed(self, frames) -> list[int]:
        """Add frames to the stream.

        Parameters
        ----------
        frames : ndarray of float, shape (C,) (one frame) or (N, C) (a chunk)
            Raw scores or log-probabilities, as ``scores`` says.

        Returns
        -------
        list of int
            The current best label sequence.
        """
        arr = self._frames(frames)
        lp_all = _log_softmax(arr) if self.scores == "logits" else arr.astype(np.float64)
        for lp_row in lp_all:
            self._step(lp_row)
        return self.best()

    def _step(self, lp_row: np.ndarray) -> None:
        blank = self.blank
        if self.top_k is None or self.top_k >= lp_row.size:
            classes = [c for c in range(lp_row.size) if c != blank]
        else:
            order = np.argsort(-lp_row, kind="stable")[:self.top_k]
            classes = [int(c) for c in order if c != blank]
        lp = lp_row.tolist()
        p_blank = lp[blank]
        new: dict[tuple, list] = {}

        def slot(prefix):
            entry = new.get(prefix)
            if entry is None:
                entry = new[prefix] = [_NEG_INF, _NEG_INF]
            return entry

        for prefix, (pb, pnb) in self._beams.items():
            total = _logaddexp(pb, pnb)
            here = slot(prefix)
            here[0] = _logaddexp(here[0], total + p_blank)
            last = prefix[-1] if prefix else -1
            for c in classes:
                p = lp[c]
                longer = slot(prefix + (c,))
                if c == last:   # a repeat collapses unless a blank separates it
                    here[1] = _logaddexp(here[1], pnb + p)
                    longer[1] = _logaddexp(longer[1], pb + p)
                else:
                    longer[1] = _logaddexp(longer[1], total + p)
        scored = [(-_logaddexp(*v), p) for p, v in new.items()]
        ranked = sorted(item for item in scored if item[0] != -_NEG_INF)   # drop impossible prefixes
        self._beams = {p: new[p] for _, p in ranked[:self.beam_width]}

    def beams(self) -> list[tuple[list[int], float]]:
        """The kept hypotheses.

        Returns
        -------
        list of (list of int, float)
            Best first, each with the log-probability of its alignments so far.
        """
        return [(list(p), _logaddexp(*v)) for p, v in self._beams.items()]

    def best(self) -> list[int]:
        """The current most probable label sequence.

        Returns
        -------
        list of int
        """
        return list(next(iter(self._beams), ()))   # empty only if every class had probability 0


def greedy_decode(logits, input_lengths=None, blank: int = 0) -> list[list[int]]:
    """Best-path decoding of a batch of time-major scores.

    Parameters
    ----------
    logits : ndarray of float, shape (T, B, C)
        Raw scores, log-probabilities or probabilities.
    input_lengths : ndarray of int, shape (B,), optional
        Frames to read per sample (all T when None).
    blank : int, default 0

    Returns
    -------
    list of list of int
        One label sequence per sample.
    """
    x = np.asarray(logits)
    if x.ndim != 3:
        raise ValueError(f"greedy_decode: logits: expected shape (T, B, C), got {x.shape}")
    T, B, C = x.shape
    lengths = (np.full(B, T) if input_lengths is None else
               _check_lengths(input_lengths, "input_lengths", B, 0, T, "the number of frames T", "greedy_decode"))
    out = []
    for b in range(B):
        dec = GreedyDecoder(blank, num_classes=C)
        out.append(dec.feed(x[:lengths[b], b]) if lengths[b] else [])
    return out


def prefix_beam_search(frames, beam_width: int = 8, blank: int = 0, scores: str = "logits",
                       top_k: int | None = None) -> tuple[list[int], float]:
    """Prefix beam search over one utterance (see :class:`PrefixBeamDecoder`).

    Parameters
    ----------
    frames : ndarray of float, shape (T, C)
    beam_width : int, default 8
    blank : int, default 0
    scores : {'logits', 'log_probs'}, default 'logits'
    top_k : int, optional
        As in :class:`PrefixBeamDecoder`.

    Returns
    -------
    labels : list of int
        The best label sequence.
    log_prob : float
        The log-probability of its alignments.
    """
    dec = PrefixBeamDecoder(beam_width, blank, scores, top_k)
    dec.feed(frames)
    beams = dec.beams()
    return beams[0] if beams else ([], _NEG_INF)
