"""Optimizers, learning-rate schedules and gradient clipping, with PyTorch's update rules and defaults.

Every optimizer updates ``Parameter.data`` in place from ``Parameter.grad`` and calls
``mark_changed()``. The update runs over each parameter in cache-sized chunks with
preallocated scratch buffers: the dozen elementwise passes of e.g. Adam then stay in L2 and
only the essential arrays (param, grad, state) travel to and from memory once per step.

``state_dict()`` returns ``{"type", "hyper", "step", "state"}``: JSON-able scalars plus one
``{name: float32 ndarray}`` dict per parameter, in parameter order (the checkpoint module
stores the arrays in safetensors and the rest as JSON).
"""
from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from .nn.module import Module, Parameter

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad",
           "StepLR", "ExponentialLR", "ReduceLROnPlateau", "clip_grad_norm", "clip_grad_value"]

# Elements per chunk: ~6 float32 arrays x 128 KiB stay in a 1 MiB L2 (see the module docstring).
_CHUNK = 32768


def _param_list(params, where: str, allow_empty: bool = False) -> list:
    """Parameters from a Module, a single Parameter, or an iterable of Parameters / (name, Parameter)."""
    if isinstance(params, Module):
        out = params.parameters()
    elif isinstance(params, Parameter):
        out = [params]
    elif isinstance(params, np.ndarray) or isinstance(params, (str, bytes)):
        raise TypeError(f"{where}: params: expected Parameters or a Module, got {type(params).__name__}")
    else:
        try:
            out = list(params)
        except TypeError:
            raise TypeError(f"{where}: params: expected Parameters or a Module, got {type(params).__name__}") from None
        out = [p[1] if isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) else p for p in out]
    for i, p in enumerate(out):
        if not isinstance(p, Parameter):
            raise TypeError(f"{where}: params: expected rnnfast.nn.Parameter items, got {type(p).__name__} at index {i}")
    if not out and not allow_empty:
        raise ValueError(f"{where}: params: got an empty parameter list")
    if len({id(p) for p in out}) != len(out):
        raise ValueError(f"{where}: params: a parameter appears more than once")
    return out


def _number(value, name: str, where: str, lo=0.0, hi=None, hi_open=False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: {name}: expected a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or (lo is not None and value < lo) or (
            hi is not None and (value >= hi if hi_open else value > hi)):
        rng = f"[{lo}, {hi})" if hi_open else f"[{lo}, {hi if hi is not None else 'inf'}]"
        raise ValueError(f"{where}: {name}: expected a finite value in {rng}, got {value}")
    return value


# Optimizers ---------------------------------------------------------------------------------------
class Optimizer:
    """Base class of the optimizers: updates ``Parameter.data`` in place from ``Parameter.grad``.

    Subclasses define ``_check_hyper``, ``_state_names`` and ``_update``.

    Parameters
    ----------
    params : Module, Parameter, or iterable of Parameter or (name, Parameter)
        What to update (``module.parameters()`` or the module itself). Parameters with
        ``requires_grad=False`` are skipped.
    **hyper
        The subclass's hyperparameters (``lr`` always), checked by ``_check_hyper``.

    Attributes
    ----------
    params : list of Parameter
    hyper : dict
        Hyperparameters; ``lr`` is also the property :attr:`lr` (schedules set it).
    step_count : int
        Updates done.
    state : list of dict of str to ndarray of float32
        Per-parameter state (momentum buffers, moments), each shaped like its parameter.
    """

    def __init__(self, params, **hyper):
        where = type(self).__name__
        self.params = _param_list(params, where)
        self.hyper = self._check_hyper(hyper)
        self.step_count = 0
        self.state = [self._new_state(p, self.hyper) for p in self.params]
        n = min(_CHUNK, max(p.size for p in self.params))
        self._scratch = (np.empty(n, np.float32), np.empty(n, np.float32))

    # hyperparameters ---------------------------------------------------------------------
    @property
    def lr(self) -> float:
        return self.hyper["lr"]

    @lr.setter
    def lr(self, value) -> None:
        self.hyper["lr"] = _number(value, "lr", type(self).__name__)

    def _check_hyper(self, hyper: dict) -> dict:
        raise NotImplementedError

    @staticmethod
    def _state_names(hyper: dict) -> tuple:
        return ()

    def _state_init(self, name: str, hyper: dict) -> float:
        return 0.0

    def _new_state(self, p: Parameter, hyper: dict) -> dict:
        return {k: np.full(p.shape, self._state_init(k, hyper), dtype=np.float32) for k in self._state_names(hyper)}

    # stepping ----------------------------------------------------------------------------
    def zero_grad(self) -> None:
        """Set every parameter's ``grad`` to zero (in place)."""
        for p in self.params:
            p.grad.fill(0.0)

    def step(self, closure=None):
        """One update of every parameter (and ``mark_changed()`` on each).

        Parameters
        ----------
        closure : callable, optional
            Called first to recompute the loss (gradients included); its value is returned.

        Returns
        -------
        float or None
            What ``closure`` returned.
        """
        loss = closure() if closure is not None else None
        first = self.step_count == 0
        self.step_count += 1
        ctx = self._step_constants()
        names = self._state_names(self.hyper)
        sa, sb = self._scratch
        for i, p in enumerate(self.params):
            if not p.requires_grad:  # frozen (e.g. Embedding(freeze=True)): no update, no decay
                continue
            if p.grad.shape != p.shape:
                raise ValueError(f"{type(self).__name__}.step: params[{i}].grad: expected shape {p.shape}, "
                                 f"got {p.grad.shape}")
            d = p.data.reshape(-1)
            g = p.grad.reshape(-1)
            st = [self.state[i][k].reshape(-1) for k in names]
            for s in range(0, d.size, _CHUNK):
                e = min(s + _CHUNK, d.size)
                self._update(d[s:e], g[s:e], [x[s:e] for x in st], sa[:e - s], sb[:e - s], ctx, first)
            p.mark_changed()
        return loss

    def _step_constants(self) -> dict:
        return self.hyper

    def _update(self, d, g, st, a, b, ctx, first):
        raise NotImplementedError

    # state -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The optimizer's state, to save and restore.

        Returns
        -------
        dict
            ``{"type", "hyper", "step", "state"}``: JSON-able scalars, and ``state`` as one
            ``{name: float32 ndarray}`` dict per parameter in parameter order (copies).
        """
        hyper = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.hyper.items()}
        return {"type": type(self).__name__, "hyper": hyper, "step": self.step_count,
                "state": [{k: v.copy() for k, v in st.items()} for st in self.state]}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyperparameters, step count and per-parameter state.

        Everything is checked before anything changes.

        Parameters
        ----------
        state_dict : dict
            What :meth:`state_dict` returned, from an optimizer of the same type over parameters of
            the same shapes.

        Raises
        ------
        TypeError, ValueError
            Another optimizer type, missing keys, or state arrays of the wrong count or shape.
        """
        where = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict):
            raise TypeError(f"{where}: state_dict: expected a dict, got {type(state_dict).__name__}")
        missing = {"type", "hyper", "step", "state"} - set(state_dict)
        if missing:
            raise ValueError(f"{where}: state_dict: missing keys {sorted(missing)}")
        if state_dict["type"] != type(self).__name__:
            raise ValueError(f"{where}: state_dict: expected type {type(self).__name__!r}, got {state_dict['type']!r}")
        hyper_in = dict(state_dict["hyper"])
        expected = set(self.hyper)
        if set(hyper_in) != expected:
            raise ValueError(f"{where}: state_dict['hyper']: expected keys {sorted(expected)}, got {sorted(hyper_in)}")
        hyper = self._check_hyper(hyper_in)
        step = state_dict["step"]
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
            raise ValueError(f"{where}: state_dict['step']: expected an int >= 0, got {step!r}")
        states = state_dict["state"]
        if len(states) != len(self.params):
            raise ValueError(f"{where}: state_dict['state']: expected state for {len(self.params)} parameters, "
                             f"got {len(states)}")
        names = set(self._state_names(hyper))
        staged = []
        for i, (p, st) in enumerate(zip(self.params, states)):
            if set(st) != names:
                raise ValueError(f"{where}: state_dict['state'][{i}]: expected keys {sorted(names)}, got {sorted(st)}")
            new = {}
            for k, v in st.items():
                arr = np.asarray(v)
                if arr.shape != p.shape:
                    raise ValueError(f"{where}: state_dict['state'][{i}][{k!r}]: expected shape {p.shape}, "
                                     f"got {arr.shape}")
                if arr.dtype.kind not in "fiu":
                    raise TypeError(f"{where}: state_dict['state'][{i}][{k!r}]: expected a numeric array, "
                                    f"got dtype {arr.dtype}")
                new[k] = np.array(arr, dtype=np.float32, order="C")
            staged.append(new)
        self.hyper, self.step_count, self.state = hyper, int(step), staged

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v}" for k, v in self.hyper.items())
        return f"{type(self).__name__}({len(self.params)} parameters, {hyper})"


def _add_weight_decay(d, g, a, wd):
    """g + wd * d, written into scratch ``a`` (the gradient itself is never modified)."""
    np.multiply(d, wd, out=a)
    a += g
    return a


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening, Nesterov and L2 weight decay.

    PyTorch's update rule: ``g = grad + weight_decay * p``; with momentum ``buf = momentum * buf +
    (1 - dampening) * g`` (``buf = g`` at the first step) and ``g = g + momentum * buf`` (Nesterov)
    or ``g = buf``; then ``p -= lr * g``.

    Parameters
    ----------
    params : Module, Parameter, or iterable of Parameter or (name, Parameter)
        As in :class:`Optimizer`.
    lr : float, default 1e-3
    momentum : float, default 0
    dampening : float, default 0
    weight_decay : float, default 0
        L2 penalty added to the gradient.
    nesterov : bool, default False
        Needs momentum > 0 and dampening == 0.
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False):
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening,
                         weight_decay=weight_decay, nesterov=nesterov)

    def _check_hyper(self, h):
        w = "SGD"
        out = dict(lr=_number(h["lr"], "lr", w), momentum=_number(h["momentum"], "momentum", w),
                   dampening=_number(h["dampening"], "dampening", w, lo=None),
                   weight_decay=_number(h["weight_decay"], "weight_decay", w), nesterov=bool(h["nesterov"]))
        if out["nesterov"] and (out["momentum"] <= 0 or out["dampening"] != 0):
            raise ValueError(f"SGD: nesterov: requires momentum > 0 and dampening = 0, got momentum="
                             f"{out['momentum']}, dampening={out['dampening']}")
        return out

    @staticmethod
    def _state_names(h):
        return ("momentum_buffer",) if h["momentum"] != 0 else ()

    def _update(self, d, g, st, a, b, h, first):
        if h["weight_decay"]:
            g = _add_weight_decay(d, g, a, h["weight_decay"])
        mom = h["momentum"]
        if mom:
            buf = st[0]
            if first:  # PyTorch starts the buffer at the first gradient, undamped
                buf[...] = g
            else:
                buf *= mom
                if h["dampening"]:
                    np.multiply(g, 1.0 - h["dampening"], out=b)
                    buf += b
                else:
                    buf += g
            if h["nesterov"]:
                np.multiply(buf, mom, out=b)
                b += g
                g = b
            else:
                g = buf
        np.multiply(g, h["lr"], out=a)
        d -= a


class Adam(Optimizer):
    """Adam (optionally AMSGrad), as in PyTorch.

    ``weight_decay`` is an L2 term added to the gradient (PyTorch's Adam); :class:`AdamW` decouples it.

    Parameters
    ----------
    params : Module, Parameter, or iterable of Parameter or (name, Parameter)
        As in :class:`Optimizer`.
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
        Decay rates of the first and second moment estimates, each in [0, 1).
    eps : float, default 1e-8
        Added to the denominator.
    weight_decay : float, default 0
    amsgrad : bool, default False
        Use the maximum of past second moments.
    """

    _decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)

    def _check_hyper(self, h):
        w = type(self).__name__
        betas = h["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{w}: betas: expected a pair (beta1, beta2), got {betas!r}")
        b1 = _number(betas[0], "betas[0]", w, hi=1.0, hi_open=True)
        b2 = _number(betas[1], "betas[1]", w, hi=1.0, hi_open=True)
        return dict(lr=_number(h["lr"], "lr", w), betas=(b1, b2), eps=_number(h["eps"], "eps", w),
                    weight_decay=_number(h["weight_decay"], "weight_decay", w), amsgrad=bool(h["amsgrad"]))

    @staticmethod
    def _state_names(h):
        return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if h["amsgrad"] else ("exp_avg", "exp_avg_sq")

    def _step_constants(self):
        h = dict(self.hyper)
        b1, b2 = h["betas"]
        t = self.step_count
        bc2_sqrt = math.sqrt(1.0 - b2 ** t)
        h["eps_scaled"] = h["eps"] * bc2_sqrt
        h["step_scaled"] = h["lr"] / (1.0 - b1 ** t) * bc2_sqrt
        return h

    def _update(self, d, g, st, a, b, h, first):
        b1, b2 = h["betas"]
        wd = h["weight_decay"]
        if wd and self._decoupled:
            d *= 1.0 - h["lr"] * wd
        elif wd:
            g = _add_weight_decay(d, g, a, wd)
        m, v = st[0], st[1]
        m *= b1
        np.multiply(g, 1.0 - b1, out=b)
        m += b
        v *= b2
        np.multiply(g, g, out=b)
        b *= 1.0 - b2
        v += b
        if h["amsgrad"]:
            np.maximum(st[2], v, out=st[2])
            v = st[2]
        # PyTorch: step_size * m / (sqrt(v) / bc2_sqrt + eps); multiplied through by bc2_sqrt
        # it needs one elementwise pass less
        np.sqrt(v, out=b)
        b += h["eps_scaled"]
        np.divide(m, b, out=b)
        b *= h["step_scaled"]
        d -= b


class AdamW(Adam):
    """Adam with decoupled weight decay: ``p *= 1 - lr * weight_decay`` before the Adam step.

    Parameters
    ----------
    params : Module, Parameter, or iterable of Parameter or (name, Parameter)
        As in :class:`Optimizer`.
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 1e-2
    amsgrad : bool, default False
        As in :class:`Adam`.
    """

    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)


class RMSprop(Optimizer):
    """RMSprop, optionally centered and with momentum, as in PyTorch.

    Parameters
    ----------
    params : Module, Parameter, or iterable of Parameter or (name, Parameter)
        As in :class:`Optimizer`.
    lr : float, default 1e-2
    alpha : float, default 0.99
        Decay rate of the squared-gradient average.
    eps : float, default 1e-8
    weight_decay : float, default 0
    momentum : float, default 0
    centered : bool, default False
        Normalise by the estimated variance instead of the uncentered second moment.
    """

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False):
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                         momentum=momentum, centered=centered)

    def _check_hyper(self, h):
        w = "RMSprop"
        return dict(lr=_number(h["lr"], "lr", w), alpha=_number(h["alpha"], "alpha", w),
                    eps=_number(h["eps"], "eps", w), weight_decay=_number(h["weight_decay"], "weight_decay", w),
                    momentum=_number(h["momentum"], "momentum", w), centered=bool(h["centered"]))

    @staticmethod
    def _state_names(h):
        names = ("square_avg",)
        if h["momentum"] > 0:
            names += ("momentum_buffer",)
        if h["centered"]:
            names += ("grad_avg",)
        return names

    def _update(self, d, g, st, a, b, h, first):
        alpha = h["alpha"]
        if h["weight_decay"]:
            g = _add_weight_decay(d, g, a, h["weight_decay"])
        sq = st[0]
        sq *= alpha
        np.multiply(g, g, out=b)
        b *= 1.0 - alpha
        sq += b
        if h["centered"]:
            gavg = st[-1]
            gavg *= alpha
            np.multiply(g, 1.0 - alpha, out=b)
            gavg += b
            np.multiply(gavg, gavg, out=b)
            np.subtract(sq, b, out=b)
            np.sqrt(b, out=b)
        else:
            np.sqrt(sq, out=b)
        b += h["eps"]
        np.divide(g, b, out=b)
        if h["momentum"] > 0:
            buf = st[1]
            buf *= h["momentum"]
            buf += b
            np.multiply(buf, h["lr"], out=b)
        else:
            b *= h["lr"]
        d -= b


class Adagrad(Optimizer):
    """Adagrad with PyTorch's learning-rate decay ``lr / (1 + (step - 1) * lr_decay)``.

    Parameters
    ----------
    params : Module, Parameter, or iterable of Parameter or (name, Parameter)
        As in :class:`Optimizer`.
    lr : float, default 1e-2
    lr_decay : float, default 0
    weight_decay : float, default 0
    initial_accumulator_value : float, default 0
    eps : float, default 1e-10
    """

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0, weight_decay: float = 0,
                 initial_accumulator_value: float = 0, eps: float = 1e-10):
        super().__init__(params, lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                         initial_accumulator_value=initial_accumulator_value, eps=eps)

    def _check_hyper(self, h):
        w = "Adagrad"
        return dict(lr=_number(h["lr"], "lr", w), lr_decay=_number(h["lr_decay"], "lr_decay", w),
                    weight_decay=_number(h["weight_decay"], "weight_decay", w),
                    initial_accumulator_value=_number(h["initial_accumulator_value"], "initial_accumulator_value", w),
                    eps=_number(h["eps"], "eps", w))

    @staticmethod
    def _state_names(h):
        return ("sum",)

    def _state_init(self, name, h):
        return h["initial_accumulator_value"]

    def _step_constants(self):
        h = dict(self.hyper)
        h["clr"] = h["lr"] / (1.0 + (self.step_count - 1) * h["lr_decay"])
        return h

    def _update(self, d, g, st, a, b, h, first):
        if h["weight_decay"]:
            g = _add_weight_decay(d, g, a, h["weight_decay"])
        acc = st[0]
        np.multiply(g, g, out=b)
        acc += b
        np.sqrt(acc, out=b)
        b += h["eps"]
        np.divide(g, b, out=b)
        b *= h["clr"]
        d -= b


# Learning-rate schedules --------------------------------------------------------------------------
class _Schedule:
    """Changes ``optimizer.lr``; ``state_dict`` is a JSON-able dict."""

    _fields: tuple = ()

    def __init__(self, optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: optimizer: expected an rnnfast.optim.Optimizer, "
                            f"got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.last_epoch = 0
        self._last_lr = [optimizer.lr]

    def get_last_lr(self) -> list:
        """The learning rate after the last :meth:`step`.

        Returns
        -------
        list of float
            One entry (rnnfast optimizers have one parameter group).
        """
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """The schedule's state.

        Returns
        -------
        dict
            JSON-able: ``type``, ``last_epoch``, ``last_lr`` and the schedule's own fields.
        """
        d = {"type": type(self).__name__, "last_epoch": self.last_epoch, "last_lr": list(self._last_lr)}
        d.update({k: getattr(self, k) for k in self._fields})
        return d

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what :meth:`state_dict` returned (from a schedule of the same type).

        Parameters
        ----------
        state_dict : dict

        Raises
        ------
        TypeError, ValueError
            Not a dict, another schedule type, or missing keys.
        """
        where = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict):
            raise TypeError(f"{where}: state_dict: expected a dict, got {type(state_dict).__name__}")
        if state_dict.get("type") != type(self).__name__:
            raise ValueError(f"{where}: state_dict: expected type {type(self).__name__!r}, "
                             f"got {state_dict.get('type')!r}")
        need = {"last_epoch", "last_lr", *self._fields}
        missing = need - set(state_dict)
        if missing:
            raise ValueError(f"{where}: state_dict: missing keys {sorted(missing)}")
        self.last_epoch = int(state_dict["last_epoch"])
        self._last_lr = [float(x) for x in state_dict["last_lr"]]
        for k in self._fields:
            setattr(self, k, state_dict[k])


class StepLR(_Schedule):
    """Multiply the learning rate by ``gamma`` every ``step_size`` calls of :meth:`step`.

    Parameters
    ----------
    optimizer : Optimizer
        Whose ``lr`` to change.
    step_size : int
        Calls of :meth:`step` between decays (>= 1).
    gamma : float, default 0.1
        Factor per decay.
    """

    _fields = ("step_size", "gamma")

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1):
        if isinstance(step_size, bool) or not isinstance(step_size, numbers.Integral) or step_size < 1:
            raise ValueError(f"StepLR: step_size: expected an int >= 1, got {step_size!r}")
        self.step_size = int(step_size)
        self.gamma = _number(gamma, "gamma", "StepLR")
        super().__init__(optimizer)

    def step(self) -> None:
        """Count one call (an epoch, usually); every ``step_size``-th multiplies ``lr`` by ``gamma``."""
        self.last_epoch += 1
        if self.last_epoch % self.step_size == 0:
            self.optimizer.lr = self.optimizer.lr * self.gamma
        self._last_lr = [self.optimizer.lr]


class ExponentialLR(_Schedule):
    """Multiply the learning rate by ``gamma`` at every :meth:`step`.

    Parameters
    ----------
    optimizer : Optimizer
        Whose ``lr`` to change.
    gamma : float
        Factor per call.
    """

    _fields = ("gamma",)

    def __init__(self, optimizer, gamma: float):
        self.gamma = _number(gamma, "gamma", "ExponentialLR")
        super().__init__(optimizer)

    def step(self) -> None:
        """Multiply the optimizer's ``lr`` by ``gamma``."""
        self.last_epoch += 1
        self.optimizer.lr = self.optimizer.lr * self.gamma
        self._last_lr = [self.optimizer.lr]


class ReduceLROnPlateau(_Schedule):
    """Multiply the learning rate by ``factor`` when ``step(metric)`` has not improved for
    ``patience`` calls (then wait ``cooldown`` calls), never below ``min_lr``. As in PyTorch.

    Parameters
    ----------
    optimizer : Optimizer
        Whose ``lr`` to change.
    mode : {'min', 'max'}, default 'min'
        Whether a lower or a higher metric is better.
    factor : float in (0, 1), default 0.1
    patience : int, default 10
        Calls without improvement tolerated before a reduction.
    threshold : float, default 1e-4
        Minimal change that counts as an improvement.
    threshold_mode : {'rel', 'abs'}, default 'rel'
        Relative (``best * (1 -+ threshold)``) or absolute (``best -+ threshold``) comparison.
    cooldown : int, default 0
        Calls to wait after a reduction before counting again.
    min_lr : float, default 0
    eps : float, default 1e-8
        A reduction smaller than this is skipped.
    """

    _fields = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lr", "eps",
               "num_bad_epochs", "cooldown_counter")

    def __init__(self, optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr: float = 0, eps: float = 1e-8):
        w = "ReduceLROnPlateau"
        if mode not in ("min", "max"):
            raise ValueError(f"{w}: mode: expected 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"{w}: threshold_mode: expected 'rel' or 'abs', got {threshold_mode!r}")
        self.factor = _number(factor, "factor", w, hi=1.0, hi_open=True)
        for name, v in (("patience", patience), ("cooldown", cooldown)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
                raise ValueError(f"{w}: {name}: expected an int >= 0, got {v!r}")
        self.mode, self.threshold_mode = mode, threshold_mode
        self.patience, self.cooldown = int(patience), int(cooldown)
        self.threshold = _number(threshold, "threshold", w)
        self.min_lr = _number(min_lr, "min_lr", w)
        self.eps = _number(eps, "eps", w)
        self.best = None  # None until the first metric: JSON has no infinity
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        super().__init__(optimizer)

    def _is_better(self, a: float) -> bool:
        best = self.best
        if best is None:  # the worst value for the mode, as PyTorch starts
            best = math.inf if self.mode == "min" else -math.inf
        if self.mode == "min":
            return a < (best * (1.0 - self.threshold) if self.threshold_mode == "rel" else best - self.threshold)
        return a > (best * (1.0 + self.threshold) if self.threshold_mode == "rel" else best + self.threshold)

    def step(self, metric) -> None:
        """Record one evaluation of the monitored metric; maybe reduce the learning rate.

        Parameters
        ----------
        metric : float
            The monitored value (e.g. the validation loss).
        """
        try:
            current = float(metric)
        except (TypeError, ValueError):
            raise TypeError(f"ReduceLROnPlateau.step: metric: expected a number, got {metric!r}") from None
        self.last_epoch += 1
        if self._is_better(current):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            old = self.optimizer.lr
            new = max(old * self.factor, self.min_lr)
            if old - new > self.eps:
                self.optimizer.lr = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [self.optimizer.lr]

    def state_dict(self) -> dict:
        d = super().state_dict()
        d["best"] = self.best
        return d

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        best = state_dict.get("best")
        self.best = None if best is None else float(best)


# Gradient clipping --------------------------------------------------------------------------------
def clip_grad_norm(params, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False) -> float:
    """Scale all gradients together so their global norm is at most ``max_norm``.

    If the norm is inf or NaN the gradients are left unchanged and a RuntimeWarning is issued
    (a RuntimeError with ``error_if_nonfinite``): scaling by a non-finite factor would silently
    destroy every gradient.

    Parameters
    ----------
    params : Module, Parameter, or iterable of Parameter or (name, Parameter)
        As in :class:`Optimizer`.
    max_norm : float
        The largest global norm allowed (>= 0).
    norm_type : float or 'inf', default 2.0
        The p of the p-norm over all gradient elements together.
    error_if_nonfinite : bool, default False

    Returns
    -------
    float
        The global norm before clipping.
    """
    where = "clip_grad_norm"
    plist = _param_list(params, where, allow_empty=True)
    max_norm = _number(max_norm, "max_norm", where)
    if isinstance(norm_type, str) and norm_type.lower() == "inf":
        norm_type = math.inf
    if isinstance(norm_type, bool) or not isinstance(norm_type, numbers.Real) or not norm_type > 0:
        raise ValueError(f"{where}: norm_type: expected a positive number or inf, got {norm_type!r}")
    norm_type = float(norm_type)
    if not plist:
        return 0.0
    grads = [p.grad.reshape(-1) for p in plist]
    total = _global_norm(grads, norm_type)
    if not math.isfinite(total):
        msg = (f"{where}: the total {norm_type}-norm of the gradients is {total}; the gradients were left "
               "unchanged (check for overflow or NaN in the forward/backward pass)")
        if error_if_nonfinite:
            raise RuntimeError(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
        return total
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        c = np.float32(coef)
        for p in plist:
            p.grad *= c
    return total


def _global_norm(grads, norm_type: float) -> float:
    if norm_type == math.inf:
        return max((float(np.max(np.abs(g))) for g in grads if g.size), default=0.0)
    if norm_type == 2.0:
        with np.errstate(over="ignore"):  # an overflow is detected and redone below
            total = sum(float(np.dot(g, g)) for g in grads)  # BLAS dot: no temporary
        if math.isinf(total) and all(np.isfinite(g).all() for g in grads):
            # the squares overflowed float32 although every gradient is finite: rescale
            scale = max(float(np.max(np.abs(g))) for g in grads if g.size)
            total = sum(float(np.dot(g / scale, g / scale)) for g in grads) * scale * scale
        return math.sqrt(total)
    total = sum(float(np.sum(np.abs(g, dtype=np.float64) ** norm_type)) for g in grads)
    return total ** (1.0 / norm_type)


def clip_grad_value(params, clip_value: float) -> None:
    """Clamp every gradient element to [-clip_value, clip_value] in place.

    Parameters
    ----------
    params : Module, Parameter, or iterable of Parameter or (name, Parameter)
        As in :class:`Optimizer`.
    clip_value : float
        >= 0.
    """
    where = "clip_grad_value"
    plist = _param_list(params, where, allow_empty=True)
    v = _number(clip_value, "clip_value", where)
    for p in plist:
        np.clip(p.grad, -v, v, out=p.grad)
