"""Data-parallel training over MPI (through mpi4py, imported only when a function here needs it).

Every rank holds the whole model and reads its own part of each global batch. A step is: forward and
backward on the local part, then ONE allreduce of a flat float32 buffer holding every gradient (and a
few scalars), so all ranks apply the same averaged gradient and their parameters stay equal::

    from rnnfast import distributed as dist
    dist.init()
    dist.broadcast_parameters(model.parameters())          # rank 0's initial weights everywhere
    for xb, yb in dist.ShardedBatches((X, y), 64, seed=0):  # 64 = the GLOBAL batch
        model.zero_grad()
        loss, grad = cross_entropy(model(xb), yb)
        model.backward(grad)
        dist.allreduce_gradients(model.parameters(), weight=int((yb != -100).sum()))  # what the mean counted
        optimizer.step()

Run it with ``mpiexec -n 4 python train.py``; ``Trainer(..., distributed=True)`` does all of this
(and rank-0 evaluation, logging and checkpoints). Install with ``pip install rnnfast[mpi]``.

With ``weight`` (the local loss's own normalizer: its token count, after ``ignore_index``), the
gradients become ``sum_r weight_r * grad_r / sum_r weight_r``: exactly the gradient of the mean loss
over the whole global batch, however unevenly the tokens fall on the ranks.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import traceback

import numpy as np

from .nn._checks import check_int

__all__ = ["init", "rank", "world_size", "is_root", "comm", "broadcast_parameters", "allreduce_gradients",
           "Reduced", "ShardedBatches", "shard_rows", "ShardedStream", "abort_on_error", "mpi_available"]

_COMM = None


def _mpi():
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError, OSError) as exc:  # no mpi4py, or mpi4py without a loadable MPI library
        raise ImportError("rnnfast.distributed needs mpi4py and an MPI library: pip install 'rnnfast[mpi]' "
                          f"(or: pip install mpi4py mpich) ({exc})") from None
    return MPI


def mpi_available() -> bool:
    """Whether mpi4py imports (importing it initialises MPI: under ``mpiexec`` or as a one-rank job).

    Returns
    -------
    bool
    """
    try:
        _mpi()
    except ImportError:
        return False
    return True


def init(comm=None):
    """Initialise MPI (mpi4py does it on import) and choose the communicator; returns it.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm, optional
        Default ``MPI.COMM_WORLD``; give a sub-communicator to train on part of the job.

    Returns
    -------
    mpi4py.MPI.Comm
    """
    global _COMM
    MPI = _mpi()
    if comm is None:
        comm = MPI.COMM_WORLD if _COMM is None else _COMM
    elif not isinstance(comm, MPI.Comm):
        raise TypeError(f"init: comm: expected an mpi4py.MPI.Comm or None, got {type(comm).__name__}")
    _COMM = comm
    return comm


def comm():
    """The communicator in use (``init()`` on first use).

    Returns
    -------
    mpi4py.MPI.Comm
    """
    return _COMM if _COMM is not None else init()


def rank() -> int:
    """This process's rank.

    Returns
    -------
    int
        0 .. ``world_size() - 1``.
    """
    return comm().Get_rank()


def world_size() -> int:
    """The number of ranks.

    Returns
    -------
    int
    """
    return comm().Get_size()


def is_root() -> bool:
    """Whether this is rank 0, the one that evaluates, logs and writes checkpoints.

    Returns
    -------
    bool
    """
    return rank() == 0


def _params(params, where):
    from .optim import _param_list
    return _param_list(params, where, allow_empty=True)


class _FlatBuffer:
    """One float32 buffer for a parameter list (kept between steps, so a step allocates nothing)."""

    def __init__(self):
        self._key = None
        self.array = None

    def get(self, plist, extra: int):
        key = (tuple(id(p) for p in plist), tuple(p.size for p in plist), extra)
        if key != self._key:
            self.array = np.empty(sum(p.size for p in plist) + extra, np.float32)
            self._key = key
        return self.array


_GRADS = _FlatBuffer()
_WEIGHTS = _FlatBuffer()


def broadcast_parameters(params, root: int = 0) -> None:
    """Overwrite every rank's parameter values with ``root``'s (one broadcast of a flat buffer).

    Call it once before training so all ranks start from the same weights (the Trainer does).

    Parameters
    ----------
    params : Module, or iterable of Parameter / (name, Parameter)
    root : int, default 0
    """
    plist = _params(params, "broadcast_parameters")
    c = comm()
    root = check_int(root, "root", 0, "broadcast_parameters", maximum=c.Get_size() - 1)
    flat = _WEIGHTS.get(plist, 0)
    offsets = _offsets(plist)
    if c.Get_rank() == root:
        for p, (a, b) in zip(plist, offsets):
            flat[a:b] = p.data.reshape(-1)
    c.Bcast(flat, root=root)
    if c.Get_rank() != root:
        for p, (a, b) in zip(plist, offsets):
            p.data.reshape(-1)[:] = flat[a:b]
            p.mark_changed()


def _offsets(plist):
    out, at = [], 0
    for p in plist:
        out.append((at, at + p.size))
        at += p.size
    return out


class Reduced:
    """What :func:`allreduce_gradients` summed besides the gradients.

    Parameters
    ----------
    weight : float
        The sum of every rank's ``weight`` (the world size without one).
    values : ndarray of float64
        The sum over ranks of each entry of ``values`` (empty without).
    """

    __slots__ = ("weight", "values")

    def __init__(self, weight, values):
        self.weight = weight
        self.values = values

    def __repr__(self) -> str:
        return f"Reduced(weight={self.weight!r}, values={self.values!r})"


def allreduce_gradients(params, average: bool = True, weight=None, values=()) -> Reduced:
    """Sum (and average) the gradients of ``params`` over all ranks with ONE allreduce.

    Parameters
    ----------
    params : Module, or iterable of Parameter / (name, Parameter)
        The same list, in the same order, on every rank.
    average : bool, default True
        Divide the sum by the world size, or with ``weight`` take the weighted mean; False: the
        plain sum (``weight`` is then only summed).
    weight : float, optional
        The normalizer of this rank's loss (its token count after ``ignore_index``, its batch size):
        the gradients become ``sum_r weight_r * grad_r / sum_r weight_r``, the whole-batch mean.
        A rank with weight 0 (no counted tokens) contributes nothing.
    values : sequence of float, optional
        Extra numbers summed in the same allreduce (e.g. ``loss * weight`` for the global loss).
        They and ``weight`` travel as float32: token counts stay exact below 2**24 per step.

    Returns
    -------
    Reduced
        ``.weight`` (total) and ``.values`` (sums).
    """
    plist = _params(params, "allreduce_gradients")
    values = np.asarray(values, np.float64).reshape(-1)
    if weight is not None:
        if isinstance(weight, bool) or not isinstance(weight, (int, float, np.integer, np.floating)) \
                or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"allreduce_gradients: weight: expected a finite number >= 0 or None, got {weight!r}")
        weight = float(weight)
    c = comm()
    if c.Get_size() == 1:  # nothing to combine: the local gradients are already the whole batch's
        return Reduced(1.0 if weight is None else weight, values)
    weighted = average and weight is not None
    flat = _GRADS.get(plist, 1 + values.size)
    for p, (a, b) in zip(plist, _offsets(plist)):
        if not weighted:
            flat[a:b] = p.grad.reshape(-1)
        elif weight == 0.0:
            flat[a:b] = 0.0  # the nan/inf gradient of an empty batch must not poison the sum
        else:
            np.multiply(p.grad.reshape(-1), np.float32(weight), out=flat[a:b])
    tail = flat.size - 1 - values.size
    flat[tail] = 1.0 if weight is None else weight
    flat[tail + 1:] = values
    c.Allreduce(_mpi().IN_PLACE, flat)
    total = float(flat[tail])
    divisor = (total if weighted else float(c.Get_size())) if average else 1.0
    inv = np.float32(1.0 / divisor) if divisor > 0 else np.float32(0.0)
    for p, (a, b) in zip(plist, _offsets(plist)):
        np.multiply(flat[a:b], inv, out=p.grad.reshape(-1))
    return Reduced(total, flat[tail + 1:].astype(np.float64))


# ----------------------------------------------------------------------------------------
# sharding: the same global order on every rank, each rank its own slice
# ----------------------------------------------------------------------------------------
def _rank_world(rank_, world):
    if world is None:
        world = world_size()
    world = check_int(world, "world_size", 1)
    if rank_ is None:
        rank_ = rank()
    rank_ = check_int(rank_, "rank", 0, maximum=world - 1)
    return rank_, world


def shard_rows(n: int, rank=None, world_size=None) -> slice:
    """The rows of an ``n``-row global batch a rank takes: contiguous, in rank order, with sizes
    differing by at most one (``np.array_split``'s split).

    Parameters
    ----------
    n : int
        Rows of the global batch.
    rank, world_size : int, optional
        Default: this process's (from MPI).

    Returns
    -------
    slice
    """
    r, w = _rank_world(rank, world_size)
    base, extra = divmod(n, w)
    start = r * base + min(r, extra)
    return slice(start, start + base + (1 if r < extra else 0))


class ShardedBatches:
    """Mini-batches over ``n`` samples (or arrays) whose GLOBAL batches are split over the ranks.

    Pass ``epoch`` orders the samples by ``default_rng([seed, epoch]).permutation(n)`` on every rank;
    global batch ``k`` is samples ``[k*batch_size, (k+1)*batch_size)`` of that order, and this rank
    yields its rows of it (:func:`shard_rows`). So all ranks together see exactly the batches one
    process with the same ``seed`` sees, and a pass is a pure function of ``(seed, epoch)``.

    Each ``iter()`` is the next pass (``set_epoch`` chooses one). ``len()`` is the same on every rank.

    Parameters
    ----------
    n_or_arrays : int, ndarray, or tuple of ndarray
        Every rank gives the same data (load it all, or give ``n`` and index your own store).
    batch_size : int
        The global batch size: at least the world size, so no rank gets an empty part.
    shuffle : bool, default True
    seed : int, default 0
    drop_last : bool, default False
        Drop a last global batch smaller than ``batch_size``. Without it, a last global batch with
        fewer samples than ranks is dropped anyway (a rank would have nothing).
    rank, world_size : int, optional
        Default: this process's (from MPI); give both to shard without MPI.
    """

    def __init__(self, n_or_arrays, batch_size: int, shuffle: bool = True, seed: int = 0, drop_last: bool = False,
                 rank=None, world_size=None):
        from .data import _as_data
        self.n, self._arrays, self._kind = _as_data(n_or_arrays)
        self.rank, self.world_size = _rank_world(rank, world_size)
        self.batch_size = check_int(batch_size, "batch_size", self.world_size, "ShardedBatches")
        self.shuffle = bool(shuffle)
        self.seed = check_int(seed, "seed", 0, "ShardedBatches")
        self.drop_last = bool(drop_last)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the pass the next ``iter()`` yields (later ones follow it).

        Parameters
        ----------
        epoch : int
        """
        self.epoch = check_int(epoch, "epoch", 0, "ShardedBatches.set_epoch")

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest >= self.world_size and not self.drop_last else 0)

    def global_order(self, epoch: int) -> np.ndarray:
        """The sample order of a pass (the same on every rank).

        Parameters
        ----------
        epoch : int

        Returns
        -------
        ndarray of int
        """
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def __iter__(self):
        from .data import _take
        order = self.global_order(self.epoch)
        self.epoch += 1
        for k in range(len(self)):
            glob = order[k * self.batch_size:(k + 1) * self.batch_size]
            yield _take(glob[shard_rows(len(glob), self.rank, self.world_size)], self._arrays, self._kind)

    def __repr__(self) -> str:
        return (f"ShardedBatches(n={self.n}, batch_size={self.batch_size}, rank={self.rank}, "
                f"world_size={self.world_size}, seed={self.seed}, epoch={self.epoch})")


class ShardedStream:
    """This rank's rows of every batch of a batch-major stream such as ``rnnfast.data.LMStream``.

    Rows of an ``LMStream`` are independent text streams whose hidden state carries from batch to
    batch, so splitting the rows (and each rank carrying its own rows' state) trains exactly what one
    process with the whole batch trains. Re-iterable like the stream; ``len()`` is the stream's.

    Parameters
    ----------
    stream : re-iterable of tuples of arrays with the batch as the first axis
    rank, world_size : int, optional
        Default: this process's (from MPI).
    """

    def __init__(self, stream, rank=None, world_size=None):
        self.stream = stream
        self.rank, self.world_size = _rank_world(rank, world_size)
        rows = getattr(stream, "batch_size", None)
        if rows is not None and rows < self.world_size:
            raise ValueError(f"ShardedStream: stream: its batch_size {rows} is smaller than the world size "
                             f"{self.world_size}; every rank needs at least one row")

    @property
    def batch_size(self) -> int:
        """This rank's rows per batch."""
        s = shard_rows(self.stream.batch_size, self.rank, self.world_size)
        return s.stop - s.start

    def __len__(self) -> int:
        return len(self.stream)

    def reset(self) -> None:
        """Rewind the underlying stream (its own ``reset``)."""
        self.stream.reset()

    def __iter__(self):
        for batch in self.stream:
            rows = shard_rows(len(batch[0]), self.rank, self.world_size)
            yield tuple(np.ascontiguousarray(a[rows]) for a in batch)

    def __repr__(self) -> str:
        return f"ShardedStream({self.stream!r}, rank={self.rank}, world_size={self.world_size})"


# ----------------------------------------------------------------------------------------
# failure: never leave the other ranks waiting in a collective forever
# ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def abort_on_error(exit_code: int = 1, passthrough=()):
    """Within ``with``: an exception on this rank prints its traceback and calls ``MPI_Abort``, which
    ends every rank of the job (the others would otherwise wait in the next collective forever).

    Parameters
    ----------
    exit_code : int, default 1
        The status ``mpiexec`` returns.
    passthrough : tuple of exception classes
        Exceptions every rank raises together (so nobody waits): these propagate as usual. With a
        single rank every exception propagates.
    """
    try:
        yield
    except BaseException as exc:
        c = _COMM
        if c is None or c.Get_size() == 1 or isinstance(exc, tuple(passthrough)) \
                or (isinstance(exc, SystemExit) and not exc.code):
            raise
        sys.stdout.flush()
        sys.stderr.write(f"rnnfast.distributed: rank {c.Get_rank()} of {c.Get_size()} failed; aborting the MPI job\n")
        traceback.print_exc()
        sys.stderr.flush()
        time.sleep(0.2)  # MPI_Abort kills the job at once: let mpiexec forward the message first
        c.Abort(exit_code)
        os._exit(exit_code)  # not reached: Abort does not return
