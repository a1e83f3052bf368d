"""A training loop any model with forward/backward can use.

The task supplies one function that runs a training step's forward, loss and backward::

    def step_fn(model, batch, state):
        logits, new_state = model(batch.x, state)
        loss, grad = cross_entropy(logits, batch.y)
        model.backward(grad)
        return loss, batch.y.size, new_state      # or just (loss, n_tokens)

``state`` is what the previous call of this pass over the data returned (``None`` at the start
of every pass), so truncated BPTT over an ``LMStream`` carries the hidden state from batch to
batch; tasks without state return ``(loss, n_tokens)``. The Trainer zeroes the gradients before
the call and afterwards checks the loss, clips and measures the gradient norm, and steps the
optimizer (and the schedule).

``train_data`` is either a re-iterable (each ``iter()`` is one pass, e.g. ``LMStream`` or
``rnnfast.data.batches(...)``) or a callable ``epoch -> iterable``. Resuming replays earlier
passes of a re-iterable without computing (so a seeded shuffle repeats exactly); a callable is
asked only for the resumed epoch.

``eval_fn(model)`` returns a number (stored under ``monitor``) or a dict of metrics containing
``monitor``; it runs with the model in eval mode every ``eval_every`` steps (default: at the end
of every pass) and once at the end. Each evaluation writes ``last.ckpt`` (and ``best.ckpt`` when
the monitored metric improved, plus a named copy when ``checkpoint_name`` is set) into
``checkpoint_dir``; ``resume(path)`` continues exactly where that checkpoint stopped.

Ctrl-C (SIGINT) during :meth:`Trainer.fit` in the main thread finishes the step under way, writes
``last.ckpt`` and raises :class:`TrainingInterrupted` (a ``KeyboardInterrupt`` that names the file);
a second Ctrl-C interrupts at once.

``distributed=True`` trains data-parallel over MPI (``rnnfast.distributed``; run under ``mpiexec``):
each rank's ``train_data`` yields its own part of every global batch (``ShardedBatches``,
``ShardedStream``) and the same number of batches per pass. The Trainer broadcasts rank 0's weights
at the start of :meth:`fit`, allreduces the gradients of every step weighted by ``n_tokens`` (so
``n_tokens`` must be the loss's own normalizer: then the step uses the whole global batch's mean
gradient), clips on that global gradient, and logs the global loss and token counts. Rank 0 alone
evaluates, logs and writes checkpoints; every rank takes the same decisions (budgets, early
stopping, divergence, Ctrl-C) at the same step. Each rank's dropout masks (and ``rng``) are reseeded
at every step from ``(seed, step, rank)``, and the checkpoint keeps every rank's carried state, so
``resume`` (on every rank, with the same number of ranks) continues exactly. An exception on one
rank aborts the whole MPI job instead of leaving the others waiting.
"""
from __future__ import annotations

import itertools
import math
import numbers
import os
import signal
import sys
import threading
import time
from collections import OrderedDict

import numpy as np

from .nn._checks import check_int
from ._atomic import atomic_write
from .optim import ReduceLROnPlateau, clip_grad_norm

__all__ = ["Trainer", "TrainingDiverged", "TrainingInterrupted"]

_TRAINER_STATE_VERSION = 1
_EPOCH_END = object()
_HUGE = 3.0e38  # a finite max_norm that never clips: clip_grad_norm then only measures


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became NaN/inf, or the loss exploded.

    Attributes
    ----------
    step : int
        The 1-based optimizer step that failed; the model keeps the weights from before it.
    loss : float
    """

    def __init__(self, message: str, step: int, loss: float):
        super().__init__(message)
        self.step = step
        self.loss = loss


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :meth:`Trainer.fit` between two steps.

    Attributes
    ----------
    step : int
        Optimizer steps done.
    path : str or None
        The checkpoint written then (None without ``checkpoint_dir`` or before the first step);
        ``Trainer.resume(path)`` continues from it.
    """

    def __init__(self, step: int, path):
        where = f"; saved {path}" if path else "; nothing saved"
        super().__init__(f"training interrupted after step {step}{where}")
        self.step = step
        self.path = path


class _InterruptFlag:
    """Within ``with``: the first SIGINT only sets ``.set`` (the loop stops at the next step boundary)
    and puts the previous handler back, so a second Ctrl-C interrupts at once. Installed only from the
    main thread and over Python's default handler (never over the application's own)."""

    def __init__(self):
        self.set = False
        self._previous = None

    def _handle(self, signum, frame):
        self.set = True
        signal.signal(signal.SIGINT, self._previous)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None and signal.getsignal(signal.SIGINT) == self._handle:
            signal.signal(signal.SIGINT, self._previous)
        return False


def _check_int(name, value, minimum, allow_none=True):
    return check_int(value, name, minimum, "Trainer", allow_none=allow_none)


def _check_real(name, value, minimum=0.0, allow_none=True, strict=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or (value <= minimum if strict else value < minimum):
        raise ValueError(f"Trainer: {name}: expected a finite number {'>' if strict else '>='} {minimum}"
                         f"{' or None' if allow_none else ''}, got {value!r}")
    return float(value)


class Trainer:
    """Train ``model`` with ``optimizer`` by calling ``step_fn`` on batches of ``train_data``.

    The contracts of ``step_fn``, ``train_data`` and ``eval_fn`` are in the module docstring.
    Give at least one budget (``epochs``, ``max_steps``, ``time_budget``); any combination works.

    Parameters
    ----------
    model : Module
        Anything with ``forward``, ``backward``, ``parameters()``, ``train()``/``eval()`` and
        ``state_dict()``/``load_state_dict()``.
    optimizer : Optimizer
        Steps after every ``step_fn`` call (its ``params`` are clipped and measured).
    step_fn : callable ``(model, batch, state) -> (loss, n_tokens[, new_state])``
        Forward, loss and backward of one batch.
    train_data : re-iterable of batches, or callable ``epoch -> iterable``
    eval_fn : callable ``model -> float or dict of str to float``, optional
        Runs in eval mode every ``eval_every`` steps (default: at the end of every pass) and once
        at the end.
    monitor : str, default 'val_loss'
        The metric that decides best checkpoints, early stopping and ReduceLROnPlateau.
    mode : {'min', 'max'}, default 'min'
    min_delta : float, default 0.0
        Smallest change of ``monitor`` that counts as an improvement.
    scheduler : learning-rate schedule, optional
    schedule_on : {'step', 'epoch', 'eval'}, optional
        When ``scheduler`` steps (default: 'eval' for ReduceLROnPlateau, which is given the
        monitored metric, else 'epoch').
    grad_clip : float, optional
        Clip the global gradient L2 norm to this (the norm before clipping is always measured).
    epochs : int, optional
        Passes over ``train_data``.
    max_steps : int, optional
        Optimizer steps, counted from step 0 (a resumed run stops at the same total).
    time_budget : float, optional
        Seconds of wall-clock per :meth:`fit` call, the final evaluation included as far as it can
        be foreseen.
    eval_every : int, optional
        Steps between evaluations.
    patience : int, optional
        Stop after this many evaluations without improvement.
    restore_best : bool, default True
        After early stopping, load the best evaluated weights back.
    checkpoint_dir : str or os.PathLike, optional
        Where every evaluation writes ``last.ckpt`` (and ``best.ckpt`` on improvement); created
        at the first save.
    checkpoint_name : str, optional
        A ``str.format`` pattern (fields ``step``, ``epoch`` and the metrics) for a named copy at
        every evaluation, e.g. ``'step{step:06d}_val{val_loss:.4f}.ckpt'``.
    keep_checkpoints : int, optional
        Keep only the most recent N named copies and delete older ones (``last.ckpt`` and
        ``best.ckpt`` are always kept; None keeps all). Tracked across resumes.
    extra : dict, optional
        JSON-able data stored in every checkpoint (vocabulary, config, ...).
    rng : numpy.random.Generator, optional
        The generator the task draws from (saved and restored with checkpoints).
    log_every : int, default 50
        Steps between progress lines (0: none).
    progress : {'auto', True, False}, default 'auto'
        'auto': a tqdm bar when stderr is a terminal, else log lines.
    log : callable ``str -> None``, optional
        Receives every text line (default: print to stdout).
    explode_factor : float, optional, default 10.0
        Stop when a step's loss exceeds this multiple of the first step's (None disables;
        NaN/inf always stop).
    on_eval : callable ``(trainer, record) -> None``, optional
        Called after every evaluation with its history record (on rank 0 only when distributed).
    distributed : bool, default False
        Data-parallel over MPI (see the module docstring); needs mpi4py (``rnnfast[mpi]``).
    seed : int, optional
        With ``distributed``: the base of every rank's per-step dropout and ``rng`` seeds (default:
        drawn by rank 0; the checkpoint keeps it).

    Attributes
    ----------
    step, epoch : int
        Optimizer steps done; index of the current pass.
    history : list of dict
        Records of kind 'train' (every ``log_every`` steps) and 'eval'.
    best_value, best_step : float or None, int or None
    stop_reason : str or None
        'max_steps', 'epochs', 'time_budget', 'early_stopping' or 'interrupted'.
    rank, world_size : int
        This process's MPI rank and the number of ranks (0 and 1 when not distributed).
    allreduce_seconds, allreduce_steps : float, int
        Time spent in the gradient allreduce (distributed) and the steps it covers, in this process.
    """

    def __init__(self, model, optimizer, step_fn, train_data, *, eval_fn=None, monitor: str = "val_loss",
                 mode: str = "min", min_delta: float = 0.0, scheduler=None, schedule_on: str | None = None,
                 grad_clip: float | None = None, epochs: int | None = None, max_steps: int | None = None,
                 time_budget: float | None = None, eval_every: int | None = None, patience: int | None = None,
                 restore_best: bool = True, checkpoint_dir=None, checkpoint_name: str | None = None,
                 keep_checkpoints: int | None = None, extra: dict | None = None, rng=None, log_every: int = 50, progress="auto", log=None,
                 explode_factor: float | None = 10.0, on_eval=None, distributed: bool = False, seed: int | None = None):
        for name, fn in (("model.forward", getattr(model, "forward", None)),
                         ("model.parameters", getattr(model, "parameters", None)),
                         ("optimizer.step", getattr(optimizer, "step", None)), ("step_fn", step_fn)):
            if not callable(fn):
                raise TypeError(f"Trainer: {name}: expected a callable, got {type(fn).__name__}")
        if eval_fn is not None and not callable(eval_fn):
            raise TypeError(f"Trainer: eval_fn: expected a callable or None, got {type(eval_fn).__name__}")
        if not callable(train_data) and not hasattr(train_data, "__iter__"):
            raise TypeError(f"Trainer: train_data: expected an iterable of batches or a callable epoch -> "
                            f"iterable, got {type(train_data).__name__}")
        if mode not in ("min", "max"):
            raise ValueError(f"Trainer: mode: expected 'min' or 'max', got {mode!r}")
        if schedule_on not in (None, "step", "epoch", "eval"):
            raise ValueError(f"Trainer: schedule_on: expected 'step', 'epoch', 'eval' or None, got {schedule_on!r}")
        if extra is not None and not isinstance(extra, dict):
            raise TypeError(f"Trainer: extra: expected a dict or None, got {type(extra).__name__}")
        if extra is not None and "trainer" in extra:
            raise ValueError("Trainer: extra: the key 'trainer' is reserved for the Trainer's own state")
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise TypeError(f"Trainer: rng: expected a numpy Generator or None, got {type(rng).__name__}")
        if progress not in ("auto", True, False):
            raise ValueError(f"Trainer: progress: expected 'auto', True or False, got {progress!r}")
        self.model = model
        self.optimizer = optimizer
        self.step_fn = step_fn
        self.train_data = train_data
        self.eval_fn = eval_fn
        self.monitor = str(monitor)
        self.mode = mode
        self.min_delta = _check_real("min_delta", min_delta, allow_none=False)
        self.scheduler = scheduler
        if schedule_on is None:
            schedule_on = "eval" if isinstance(scheduler, ReduceLROnPlateau) else "epoch"
        self.schedule_on = schedule_on
        self.grad_clip = _check_real("grad_clip", grad_clip, strict=True)
        self.epochs = _check_int("epochs", epochs, 1)
        self.max_steps = _check_int("max_steps", max_steps, 0)
        self.time_budget = _check_real("time_budget", time_budget)
        if self.epochs is None and self.max_steps is None and self.time_budget is None:
            raise ValueError("Trainer: give a budget: epochs, max_steps or time_budget (none was set)")
        self.eval_every = _check_int("eval_every", eval_every, 1)
        self.patience = _check_int("patience", patience, 1)
        self.restore_best = bool(restore_best)
        self.checkpoint_dir = None if checkpoint_dir is None else os.fspath(checkpoint_dir)
        self.checkpoint_name = checkpoint_name
        self.keep_checkpoints = _check_int("keep_checkpoints", keep_checkpoints, 0)
        self.extra = dict(extra) if extra else {}
        self.rng = rng
        self.log_every = _check_int("log_every", log_every, 0, allow_none=False)
        self.progress = progress
        self._log = log if log is not None else print
        self.explode_factor = _check_real("explode_factor", explode_factor, minimum=1.0, strict=True)
        self.on_eval = on_eval
        # clip and measure what the optimizer updates (any optimizer with step(); rnnfast's have .params)
        self._params = list(getattr(optimizer, "params", None) or model.parameters())
        self.seed = _check_int("seed", seed, 0)
        self._comm = None
        self.rank, self.world_size = 0, 1
        if distributed:
            from . import distributed as dist
            self._comm = dist.init()
            self.rank, self.world_size = self._comm.Get_rank(), self._comm.Get_size()
        self._is_root = self.rank == 0
        self._dist_seed = None   # the base of the per-step stream seeds (distributed; fixed at the first fit)
        self._sync_stop = False  # a Ctrl-C on any rank, as the last allreduce told every rank
        self.allreduce_seconds = 0.0  # time in the gradient allreduce, over allreduce_steps steps of this process
        self.allreduce_steps = 0

        # progress through the data and the run
        self.step = 0            # optimizer steps done
        self.epoch = 0           # index of the current pass over train_data
        self.batch_in_epoch = 0  # batches of the current pass consumed
        self.history: list = []  # dicts: kind 'train' (every log_every steps) or 'eval'
        self.best_value = None
        self.best_step = None
        self.bad_evals = 0
        self.stop_reason = None
        self._named: list = []   # named checkpoint files written, oldest first (for keep_checkpoints)
        self.elapsed = 0.0       # wall-clock seconds over all fit() calls, resumed runs included
        self._state = None       # step_fn's carried state
        self._fit_t0 = None
        self._bar = None
        self._iter = None
        self._best_state = None
        self._first_loss = None
        self._last_eval_step = None
        self._last_metrics = {}
        self._eval_seconds = 0.0
        self._window = [0.0, 0, 0.0, 0.0, 0]  # loss*tokens, tokens, seconds, grad-norm sum, steps
        self._since_eval = [0.0, 0, 0.0]      # loss*tokens, tokens, seconds
        self.tokens_seen = 0                  # over the whole run (resumes included)
        self.train_seconds = 0.0              # time inside training steps (evaluations excluded)

    # ------------------------------------------------------------------------------------
    # public API
    # ------------------------------------------------------------------------------------
    def fit(self) -> list:
        """Train until a budget is spent or early stopping fires.

        Returns
        -------
        list of dict
            :attr:`history`.

        Raises
        ------
        TrainingDiverged
            The loss or gradient norm went NaN/inf, or the loss exploded; the model keeps the
            weights from before that step and no checkpoint is written for it.
        TrainingInterrupted
            Ctrl-C, after the step under way finished and ``last.ckpt`` was saved.
        """
        if self._comm is None:
            return self._fit()
        from . import distributed as dist
        with dist.abort_on_error(passthrough=(TrainingDiverged, TrainingInterrupted)):
            self._start_distributed()
            return self._fit()

    def _start_distributed(self):
        """Same weights, same stream seed and the same number of batches per pass on every rank."""
        from . import distributed as dist
        c = self._comm
        dist.broadcast_parameters(self.model.parameters())  # frozen ones too: every rank runs the same model
        if self._dist_seed is None:
            seed = self.seed if self.seed is not None else int(np.random.SeedSequence().generate_state(1)[0])
            self._dist_seed = int(c.bcast(seed if self._is_root else None, root=0))
        sizes = c.allgather(_len(self.train_data))
        if len(set(sizes)) > 1:
            raise ValueError(f"Trainer: train_data: every rank must have the same number of batches per pass, "
                             f"got {sizes} (rank by rank); shard with rnnfast.distributed.ShardedBatches or "
                             "ShardedStream")

    def _fit(self) -> list:
        t0 = self._fit_t0 = time.perf_counter()
        self.stop_reason = None
        self._sync_stop = False
        self.model.train()
        bar = self._make_bar()
        self._bar = bar
        interrupted = None
        try:
            with _InterruptFlag() as ctrl_c:
                self._run(t0, bar, ctrl_c)
                if self._stop_requested(ctrl_c):
                    interrupted = self._save_interrupted()
        finally:
            self.elapsed += time.perf_counter() - t0
            self._fit_t0 = None
            if bar is not None:
                bar.close()
            self._bar = None
        if interrupted is not None:
            self.log(str(interrupted))
            raise interrupted
        if self.stop_reason == "early_stopping" and self.restore_best:
            self._restore_best()
        self.log(f"stopped: {self._reason_text()} after step {self.step}")
        return self.history

    def _run(self, t0, bar, ctrl_c):
        """fit()'s loop: steps until a budget, early stopping or Ctrl-C (``ctrl_c.set``) stops it."""
        step_seconds = 0.0
        while True:
            if self._stop_requested(ctrl_c):
                self.stop_reason = "interrupted"
                return
            reason = self._budget_reason(t0, step_seconds)
            if reason:
                self.stop_reason = reason
                break
            batch = self._next_batch()
            if batch is _EPOCH_END:
                if self._finish_epoch(t0):
                    break
                continue
            ts = time.perf_counter()
            self._train_step(batch, ctrl_c)
            step_seconds = time.perf_counter() - ts
            self._window[2] += step_seconds
            self._since_eval[2] += step_seconds
            self.train_seconds += step_seconds
            if bar is not None:
                bar.update(1)
            if self.log_every and self.step % self.log_every == 0:
                self._log_window(t0)
            if self.eval_every and self.step % self.eval_every == 0:
                if self._eval_point(t0):
                    break
        if self.step > 0 and self._last_eval_step != self.step and self.stop_reason != "early_stopping" \
                and not self._stop_requested(ctrl_c):
            self._eval_point(t0, final=True)

    def _stop_requested(self, ctrl_c) -> bool:
        """Ctrl-C seen; distributed: on any rank, as of the last step (so all ranks stop together)."""
        return ctrl_c.set if self._comm is None else self._sync_stop

    def _save_interrupted(self):
        """After Ctrl-C: write last.ckpt (when there is a directory and something was trained)."""
        self.stop_reason = "interrupted"
        path = self._ckpt_path("last.ckpt") if self.step > 0 else None
        if path is not None:
            if self._is_root:
                os.makedirs(self.checkpoint_dir, exist_ok=True)
            self.save(path)
        return TrainingInterrupted(self.step, path)

    def evaluate(self) -> dict:
        """Run ``eval_fn`` in eval mode (the model's mode is restored afterwards).

        Returns
        -------
        dict of str to float
            The metrics (``{}`` without ``eval_fn``); a plain number is stored under ``monitor``.
        """
        if self.eval_fn is None:
            return {}
        was_training = getattr(self.model, "training", True)
        self.model.eval()
        try:
            value = self.eval_fn(self.model)
        finally:
            self.model.train(was_training)
        if isinstance(value, dict):
            metrics = {str(k): float(v) for k, v in value.items()}
            if self.monitor not in metrics:
                raise ValueError(f"Trainer: eval_fn returned the metrics {sorted(metrics)}, which lack the "
                                 f"monitored {self.monitor!r}; return it or set monitor=")
            return metrics
        try:
            return {self.monitor: float(value)}
        except (TypeError, ValueError):
            raise TypeError(f"Trainer: eval_fn: expected a number or a dict of numbers, got "
                            f"{type(value).__name__}") from None

    def save(self, path) -> None:
        """Write a checkpoint of the model, optimizer, schedule, rng and Trainer state.

        Distributed: call it on every rank (it gathers every rank's carried state); rank 0 writes.

        Parameters
        ----------
        path : str or os.PathLike
        """
        from .checkpoint import save_checkpoint
        rank_states = None
        if self._comm is not None:
            rank_states = self._comm.gather(_pack_state(self._state), root=0)
            if not self._is_root:
                return
        extra = dict(self.extra)
        extra["trainer"] = self._trainer_state()
        if rank_states is not None:
            extra["trainer"].update(world_size=self.world_size, rank_states=rank_states, dist_seed=self._dist_seed)
        save_checkpoint(path, self.model, optimizer=self.optimizer, scheduler=self.scheduler, step=self.step,
                        rng=self.rng, extra=extra)

    def resume(self, path):
        """Restore everything from a checkpoint written by a Trainer.

        The next :meth:`fit` continues exactly as the original run would have (replaying earlier
        passes of a re-iterable ``train_data`` without computing, so seeded shuffles repeat).

        Parameters
        ----------
        path : str or os.PathLike
            E.g. ``checkpoint_dir/last.ckpt``, also after Ctrl-C.

        Returns
        -------
        Checkpoint

        Raises
        ------
        ValueError
            Not a Trainer checkpoint, or data that no longer matches it.
        """
        from .checkpoint import load_checkpoint
        # read first, validate the trainer part, then load: a bad file changes nothing
        probe = load_checkpoint(path)
        st = (probe.extra or {}).get("trainer") if isinstance(probe.extra, dict) else None
        if not isinstance(st, dict) or st.get("version") != _TRAINER_STATE_VERSION:
            raise ValueError(f"{os.fspath(path)}: not a checkpoint written by rnnfast.train.Trainer "
                             "(no trainer state); load it with rnnfast.checkpoint.load_checkpoint instead")
        saved_world = int(st.get("world_size", 1))
        if saved_world != self.world_size:
            raise ValueError(f"{os.fspath(path)}: written by a run on {saved_world} rank(s), but this one has "
                             f"{self.world_size}; resume with the same number of ranks (each rank's data part "
                             "and carried state depend on it)")
        best_state = None
        best_path = self._ckpt_path("best.ckpt")
        if self.restore_best and st.get("best_step") is not None and best_path and os.path.exists(best_path):
            best = load_checkpoint(best_path)
            if best.step == st["best_step"]:
                best_state = OrderedDict((k, v.copy()) for k, v in best.model_state.items())
        data_iter = self._fast_forward(int(st["epoch"]), int(st["batch_in_epoch"]))
        ckpt = load_checkpoint(path, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                               rng=self.rng)
        self.step = int(st["step"])
        self.epoch = int(st["epoch"])
        self.batch_in_epoch = int(st["batch_in_epoch"])
        self.history = list(st["history"])
        self.best_value = st["best_value"]
        self.best_step = st["best_step"]
        self.bad_evals = int(st["bad_evals"])
        self.elapsed = float(st["elapsed"])
        self._first_loss = st["first_loss"]
        self._last_metrics = dict(st.get("last_metrics") or {})
        self._state = _unpack_state(st["rank_states"][self.rank] if "rank_states" in st else st["state"])
        if self._comm is not None:
            self._dist_seed = st.get("dist_seed")
        self._best_state = best_state
        self._last_eval_step = self.step
        self.tokens_seen = int(st.get("tokens_seen", 0))
        self.train_seconds = float(st.get("train_seconds", 0.0))
        self._named = [str(n) for n in st.get("named_checkpoints", [])]
        self._window = [0.0, 0, 0.0, 0.0, 0]
        self._since_eval = [0.0, 0, 0.0]
        self._iter = data_iter
        return ckpt

    def log(self, message: str) -> None:
        """Write a line without breaking the progress bar.

        Parameters
        ----------
        message : str
        """
        if not self._is_root:
            return  # distributed: rank 0 alone logs
        bar = getattr(self, "_bar", None)
        if bar is not None and self._log is print:
            bar.write(message, file=sys.stdout)
        else:
            self._log(message)

    # ------------------------------------------------------------------------------------
    # the loop
    # ------------------------------------------------------------------------------------
    def _budget_reason(self, t0, step_seconds):
        if self.max_steps is not None and self.step >= self.max_steps:
            return "max_steps"
        if self.epochs is not None and self.epoch >= self.epochs:
            return "epochs"
        if self.time_budget is not None:
            # stop before a step that would overrun, keeping time for the final evaluation
            reserve = step_seconds + (self._eval_seconds if self.eval_fn is not None else 0.0)
            over = time.perf_counter() - t0 + reserve >= self.time_budget
            if self._comm is not None:  # rank 0's clock decides for everyone
                over = self._comm.bcast(over if self._is_root else None, root=0)
            if over:
                return "time_budget"
        return None

    def _epoch_iterable(self, epoch):
        data = self.train_data
        if callable(data) and not hasattr(data, "__iter__"):
            return data(epoch)
        return data

    def _next_batch(self):
        if self._iter is None:
            self._iter = iter(self._epoch_iterable(self.epoch))
        try:
            batch = next(self._iter)
        except StopIteration:
            if self.batch_in_epoch == 0:
                raise ValueError(f"Trainer: train_data: pass {self.epoch} yielded no batches (a generator can be "
                                 "iterated only once: give a list, a re-iterable or a callable epoch -> "
                                 "iterable)") from None
            self._iter = None
            return _EPOCH_END
        self.batch_in_epoch += 1
        return batch

    def _finish_epoch(self, t0) -> bool:
        """End of a pass: reset the carried state, step an epoch schedule, maybe evaluate."""
        self.epoch += 1
        self.batch_in_epoch = 0
        self._state = None
        if self.scheduler is not None and self.schedule_on == "epoch":
            self.scheduler.step()
        if self.eval_every is None and self.step > 0:
            return self._eval_point(t0)
        return False

    def _fast_forward(self, epoch, batches):
        data = self.train_data
        if callable(data) and not hasattr(data, "__iter__"):
            it = iter(data(epoch))
        else:
            for _ in range(epoch):  # replay earlier passes so seeded shuffles draw the same orders
                for _ in data:
                    pass
            it = iter(data)
        skipped = sum(1 for _ in itertools.islice(it, batches))
        if skipped != batches:
            raise ValueError(f"Trainer.resume: train_data: the checkpoint stopped after batch {batches} of pass "
                             f"{epoch}, but that pass has only {skipped} batches now (different data?)")
        return it

    def _train_step(self, batch, ctrl_c=None):
        model = self.model
        model.zero_grad()
        step = self.step + 1
        if self._comm is not None:
            self._reseed_streams(step)
        out = self.step_fn(model, batch, self._state)
        if not isinstance(out, tuple) or len(out) not in (2, 3):
            raise TypeError(f"Trainer: step_fn: expected to return (loss, n_tokens) or (loss, n_tokens, state), "
                            f"got {type(out).__name__}")
        loss, n_tokens = float(out[0]), int(out[1])
        new_state = out[2] if len(out) == 3 else None
        if self._comm is not None:
            loss, n_tokens = self._allreduce(loss, n_tokens, ctrl_c is not None and ctrl_c.set)
        self._check_loss(loss, step)
        try:
            norm = clip_grad_norm(self._params, self.grad_clip if self.grad_clip else _HUGE,
                                  error_if_nonfinite=True)
        except RuntimeError:
            self._diverged(step, loss, "the gradient norm is not finite (inf or NaN)")
        self.optimizer.step()
        if self.scheduler is not None and self.schedule_on == "step":
            self.scheduler.step()
        self.step = step
        self._state = new_state
        w = self._window
        w[0] += loss * n_tokens
        w[1] += n_tokens
        w[3] += norm
        w[4] += 1
        self._since_eval[0] += loss * n_tokens
        self._since_eval[1] += n_tokens
        self.tokens_seen += n_tokens
        self._last_loss, self._last_norm = loss, norm

    def _allreduce(self, loss, n_tokens, ctrl_c):
        """The global gradient (weighted by each rank's token count), loss and tokens; Ctrl-C anywhere."""
        from . import distributed as dist
        if n_tokens < 0:
            raise ValueError(f"Trainer: step_fn: n_tokens must be >= 0, got {n_tokens}")
        ta = time.perf_counter()
        red = dist.allreduce_gradients(self._params, weight=n_tokens,
                                       values=(loss * n_tokens if n_tokens else 0.0, 1.0 if ctrl_c else 0.0))
        self.allreduce_seconds += time.perf_counter() - ta
        self.allreduce_steps += 1
        total = int(round(red.weight))
        self._sync_stop = bool(red.values[1] > 0)
        return (float(red.values[0]) / total if total else float("nan")), total

    def _reseed_streams(self, step):
        """Dropout masks and ``rng`` of this step: a function of (seed, step, rank) alone, so a resumed
        run draws what the original drew on every rank (rank 0's checkpoint holds the seed)."""
        base = [self._dist_seed, step, self.rank]
        named = getattr(self.model, "named_modules", None)
        for i, (_, m) in enumerate(named() if callable(named) else ()):
            seed_dropout = getattr(m, "seed_dropout", None)
            if callable(seed_dropout):
                seed_dropout(np.random.SeedSequence(base + [i]))
        if self.rng is not None:
            bitgen = type(self.rng.bit_generator)(np.random.SeedSequence(base + [2**32 - 1]))
            self.rng.bit_generator.state = bitgen.state

    def _check_loss(self, loss, step):
        if not math.isfinite(loss):
            self._diverged(step, loss, f"the loss is {loss}")
        # The reference is the untrained model's loss (the first step's): a blow-up far past it is
        # divergence, while a loss that merely rises from a near-zero minimum is not.
        if self._first_loss is None:
            self._first_loss = loss
        ref = self._first_loss
        if self.explode_factor is not None and ref > 0 and loss > self.explode_factor * ref:
            self._diverged(step, loss, f"the loss {loss:.4g} exploded to more than {self.explode_factor:g}x the "
                                       f"first step's loss ({ref:.4g})")

    def _diverged(self, step, loss, why):
        last = self._ckpt_path("last.ckpt")
        where = f"; the last checkpoint is {last}" if last and os.path.exists(last) else ""
        raise TrainingDiverged(
            f"training diverged at step {step}: {why}. The model keeps the weights from before step {step}{where}. "
            "Lower the learning rate or clip the gradients (grad_clip).", step, loss)

    # ------------------------------------------------------------------------------------
    # evaluation, early stopping, checkpoints
    # ------------------------------------------------------------------------------------
    def _eval_point(self, t0, final: bool = False) -> bool:
        """Evaluate, record, checkpoint; True when early stopping says stop."""
        te = time.perf_counter()
        if self.eval_fn is None:  # nothing to measure: just keep the last checkpoint fresh
            saved = self._checkpoint({}, False)
            self._last_eval_step = self.step
            if saved:
                self.log(f"step {self.step} | saved {os.path.basename(saved[-1])}")
            return False
        if self._comm is None:
            metrics = self.evaluate()
        else:  # rank 0 evaluates; everyone takes its decisions (best, schedule, early stopping)
            metrics = self._comm.bcast(self.evaluate() if self._is_root else None, root=0)
        improved = False
        if metrics:
            value = metrics[self.monitor]
            improved = self._is_better(value)
            if improved:
                self.best_value, self.best_step, self.bad_evals = value, self.step, 0
                if self.restore_best:
                    self._best_state = OrderedDict((k, v.copy()) for k, v in self.model.state_dict().items())
            else:
                self.bad_evals += 1
            if self.scheduler is not None and self.schedule_on == "eval":
                if isinstance(self.scheduler, ReduceLROnPlateau):
                    self.scheduler.step(value)
                else:
                    self.scheduler.step()
        se = self._since_eval
        record = {"kind": "eval", "step": self.step, "epoch": self._epoch_float(),
                  "elapsed": self._elapsed_now(t0),
                  "train_loss": se[0] / se[1] if se[1] else None,
                  "tokens_per_s": se[1] / se[2] if se[2] > 0 else None, **metrics, "best": improved}
        self._since_eval = [0.0, 0, 0.0]
        self._last_metrics = metrics
        self.history.append(record)
        self._last_eval_step = self.step
        stop = (self.patience is not None and metrics and self.bad_evals >= self.patience)
        if stop:
            self.stop_reason = "early_stopping"
        saved = self._checkpoint(metrics, improved)
        self._log_eval(record, saved)
        if self.on_eval is not None and self._is_root:
            self.on_eval(self, record)
        self._eval_seconds = time.perf_counter() - te
        return bool(stop)

    def _is_better(self, value) -> bool:
        if not math.isfinite(value):
            return False
        if self.best_value is None:
            return True
        if self.mode == "min":
            return value < self.best_value - self.min_delta
        return value > self.best_value + self.min_delta

    def _ckpt_path(self, name):
        return None if self.checkpoint_dir is None else os.path.join(self.checkpoint_dir, name)

    def _checkpoint(self, metrics, improved):
        """Write last (+ best, + the named copy) atomically; returns the paths written."""
        if self.checkpoint_dir is None:
            return []
        if not self._is_root:
            self.save(None)  # takes part in gathering the carried states; rank 0 writes
            return []
        targets = []
        if improved:
            targets.append(self._ckpt_path("best.ckpt"))
        if self.checkpoint_name:
            fields = {"step": self.step, "epoch": self.epoch, **metrics}
            try:
                name = self.checkpoint_name.format(**fields)
            except (KeyError, ValueError, IndexError) as exc:
                raise ValueError(f"Trainer: checkpoint_name: cannot format {self.checkpoint_name!r} with "
                                 f"{sorted(fields)} ({exc!r})") from None
            targets.append(self._ckpt_path(name))
            if name in self._named:
                self._named.remove(name)
            self._named.append(name)  # before saving, so the checkpoint's own list names it
        os.makedirs(self.checkpoint_dir, exist_ok=True)
        last = self._ckpt_path("last.ckpt")
        self.save(last)
        written = [last]
        if targets:
            with open(last, "rb") as f:
                data = f.read()
            for t in targets:  # the same bytes: copy rather than serialise again
                atomic_write(t, data)
                written.append(t)
        self._prune_named()
        return written

    def _prune_named(self):
        """Past keep_checkpoints, delete the oldest named copies (never last.ckpt or best.ckpt)."""
        if self.keep_checkpoints is None:
            return
        while len(self._named) > self.keep_checkpoints:
            old = self._named.pop(0)
            path = self._ckpt_path(old)
            if old not in ("last.ckpt", "best.ckpt") and os.path.isfile(path):
                os.remove(path)

    def _restore_best(self):
        if self._best_state is None:
            self.log("early stopping: no best weights in memory to restore (the best checkpoint file is "
                     "missing); keeping the last weights")
            return
        self.model.load_state_dict(self._best_state)
        self.log(f"restored the best weights (step {self.best_step}, {self.monitor} {self.best_value:.4f})")

    def _trainer_state(self) -> dict:
        return {"version": _TRAINER_STATE_VERSION, "step": self.step, "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch, "history": self.history, "best_value": self.best_value,
                "best_step": self.best_step, "bad_evals": self.bad_evals,
                "elapsed": self._elapsed_now(),
                "first_loss": self._first_loss, "last_metrics": self._last_metrics,
                "tokens_seen": self.tokens_seen, "train_seconds": self.train_seconds,
                "named_checkpoints": list(self._named),
                "state": _pack_state(self._state)}

    # ------------------------------------------------------------------------------------
    # reporting
    # ------------------------------------------------------------------------------------
    def _elapsed_now(self, t0=None):
        t0 = self._fit_t0 if t0 is None else t0
        return self.elapsed + (time.perf_counter() - t0 if t0 is not None else 0.0)

    def _epoch_float(self):
        n = _len(self.train_data)
        return self.epoch + (self.batch_in_epoch / n if n else 0.0)

    def _make_bar(self):
        if not self._is_root or self.progress is False or (self.progress == "auto" and not sys.stderr.isatty()):
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return None
        total = self.max_steps
        if total is None and self.epochs is not None and _len(self.train_data):
            total = self.epochs * _len(self.train_data)
        return tqdm(total=total, initial=self.step, unit="step", dynamic_ncols=True, file=sys.stderr)

    def _log_window(self, t0):
        loss_tok, tokens, seconds, norm_sum, steps = self._window
        rec = {"kind": "train", "step": self.step, "epoch": self._epoch_float(),
               "loss": loss_tok / tokens if tokens else float("nan"),
               "grad_norm": norm_sum / steps if steps else float("nan"), "lr": _lr(self.optimizer),
               "tokens_per_s": tokens / seconds if seconds > 0 else float("nan"),
               "elapsed": self._elapsed_now(t0)}
        self._window = [0.0, 0, 0.0, 0.0, 0]
        self.history.append(rec)
        if self._bar is not None:
            post = {"loss": f"{rec['loss']:.4f}", "grad": f"{rec['grad_norm']:.3g}",
                    "tok/s": _si(rec["tokens_per_s"])}
            if self.monitor in self._last_metrics:
                post[self.monitor] = f"{self._last_metrics[self.monitor]:.4f}"
            self._bar.set_postfix(post, refresh=False)
        else:
            parts = [f"step {self.step}", f"epoch {rec['epoch']:.2f}", f"loss {rec['loss']:.4f}"]
            if self.monitor in self._last_metrics:
                parts.append(f"{self.monitor} {self._last_metrics[self.monitor]:.4f}")
            parts += [f"{_si(rec['tokens_per_s'])} tok/s", f"grad norm {rec['grad_norm']:.3g}",
                      f"lr {rec['lr']:.3g}", f"{rec['elapsed']:.0f}s"]
            self.log(" | ".join(parts))

    def _log_eval(self, record, saved):
        parts = [f"eval step {record['step']}", f"epoch {record['epoch']:.2f}"]
        if record["train_loss"] is not None:
            parts.append(f"train loss {record['train_loss']:.4f}")
        skip = {"kind", "step", "epoch", "elapsed", "train_loss", "best", "tokens_per_s"}
        parts += [f"{k} {v:.4f}" for k, v in record.items() if k not in skip]
        if record["best"]:
            parts.append("best")
        if record["tokens_per_s"]:
            parts.append(f"{_si(record['tokens_per_s'])} tok/s")
        if saved:
            parts.append(f"saved {os.path.basename(saved[-1])}")
        self.log(" | ".join(parts))

    def _reason_text(self):
        return {"max_steps": f"reached max_steps={self.max_steps}", "epochs": f"finished {self.epochs} epoch(s)",
                "time_budget": f"time budget of {self.time_budget:g}s spent" if self.time_budget else "",
                "interrupted": "interrupted (Ctrl-C)",
                "early_stopping": f"no improvement of {self.monitor} in {self.patience} evaluations "
                                  f"(best {self.best_value} at step {self.best_step})"}.get(self.stop_reason,
                                                                                          str(self.stop_reason))


# ----------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------
def _len(data):
    """Batches per pass of a sized re-iterable (None for a callable or an unsized iterable)."""
    if callable(data) and not hasattr(data, "__iter__"):
        return None
    try:
        return len(data)
    except TypeError:
        return None


def _lr(optimizer):
    try:
        return float(optimizer.lr)
    except (AttributeError, TypeError, ValueError):
        return float("nan")


def _si(x):
    if not math.isfinite(x):
        return "?"
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.1f}{unit}"
    return f"{x:.0f}"


def _pack_state(s):
    """A carried state as JSON-able data (arrays stay arrays: the checkpoint stores them exactly)."""
    if s is None or isinstance(s, (bool, int, float, str)):
        return s
    if isinstance(s, np.ndarray):
        return {"__array__": np.ascontiguousarray(s)}
    if isinstance(s, (tuple, list)):
        return {"__tuple__" if isinstance(s, tuple) else "__list__": [_pack_state(x) for x in s]}
    if isinstance(s, dict):
        return {"__dict__": {str(k): _pack_state(v) for k, v in s.items()}}
    if isinstance(s, (np.integer, np.floating)):
        return s.item()
    raise TypeError(f"Trainer: the state returned by step_fn contains a {type(s).__name__}; checkpoints can "
                    "store None, numbers, numpy arrays and tuples/lists/dicts of them")


def _unpack_state(s):
    if not isinstance(s, dict):
        return s
    if "__array__" in s:
        return np.array(s["__array__"], dtype=np.asarray(s["__array__"]).dtype)
    if "__tuple__" in s:
        return tuple(_unpack_state(x) for x in s["__tuple__"])
    if "__list__" in s:
        return [_unpack_state(x) for x in s["__list__"]]
    if "__dict__" in s:
        return {k: _unpack_state(v) for k, v in s["__dict__"].items()}
    return s
