"""Module and Parameter: the explicit forward/backward building blocks.

There is no autograd tape. A training forward produces a :class:`Context` holding exactly what
its backward needs (copies of any input it keeps, so editing an input array afterwards changes
nothing); ``backward`` consumes it, returns the gradient of the input and accumulates (+=) into
each parameter's ``.grad``. Two ways to hold the contexts, one policy:

* explicit: ``out, ctx = m.forward_ctx(x)`` ... ``m.backward_ctx(ctx, grad)`` (any order, any
  thread, each context once);
* sugar: ``out = m(x)`` ... ``m.backward(grad)``: pending forwards form a stack per module and per
  thread, and ``backward`` takes the newest (so backward calls come in reverse order of the
  forwards, as back-propagation through time and decoder loops need).

A backward that has no forward to pair with raises; so does a context given to another module or
used twice. Gradients accumulate under each parameter's lock, so one module may train from
several threads at once. ``with no_grad():`` (or ``eval()``) runs forwards that keep nothing.
"""
from __future__ import annotations

import contextlib
import threading
import warnings
from collections import OrderedDict
from typing import Iterator

import numpy as np

class Parameter:
    """A float32 array with its gradient.

    ``version`` counts changes to ``data``: kernels that cache a packed copy of a weight
    (the recurrent layers in eval mode) repack when it moves. Assigning ``.data``, the
    optimizers and ``load_state_dict`` bump it; code that edits ``.data`` in place
    itself must call ``mark_changed()``.
    """

    __slots__ = ("_data", "grad", "version", "requires_grad", "_lock")

    def __init__(self, data, requires_grad: bool = True):
        self._data = _as_float32(data, "data")
        self.grad = np.zeros_like(self._data)
        self.version = 0
        self.requires_grad = bool(requires_grad)  # False: frozen, optimizers leave it alone
        self._lock = threading.Lock()  # held while a backward adds into .grad

    def __getstate__(self):  # locks do not pickle; a copy gets its own
        return {"data": self._data, "grad": self.grad, "version": self.version, "requires_grad": self.requires_grad}

    def __setstate__(self, state):
        self._data, self.grad = state["data"], state["grad"]
        self.version, self.requires_grad = state["version"], state["requires_grad"]
        self._lock = threading.Lock()

    @property
    def data(self) -> np.ndarray:
        return self._data

    @data.setter
    def data(self, value) -> None:
        value = _as_float32(value, "data")
        if value.shape != self._data.shape:
            raise ValueError(f"Parameter.data: expected shape {self._data.shape}, got {value.shape}")
        self._data = value
        self.version += 1

    def mark_changed(self) -> None:
        """Call after editing ``data`` in place so cached packed weights are refreshed."""
        self.version += 1

    @property
    def shape(self) -> tuple:
        return self._data.shape

    @property
    def size(self) -> int:
        return self._data.size

    def zero_grad(self) -> None:
        self.grad.fill(0.0)

    def __repr__(self) -> str:
        return f"Parameter(shape={self._data.shape})"


def _as_float32(value, name: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    return np.array(arr, dtype=np.float32, order="C")  # always a private copy


class accumulating:
    """``with accumulating(*params):`` holds the locks of ``params`` (None entries skipped) while
    adding into their ``.grad``. Locks are taken in one global order, so two threads never
    deadlock. (A class, not a generator: this runs on every backward.)"""

    __slots__ = ("_locks",)

    def __init__(self, *params):
        locks = {id(p._lock): p._lock for p in params if p is not None}
        self._locks = [locks[k] for k in sorted(locks)] if len(locks) > 1 else list(locks.values())

    def __enter__(self):
        for lock in self._locks:
            lock.acquire()

    def __exit__(self, *exc_info):
        for lock in reversed(self._locks):
            lock.release()


# saved-for-backward state -------------------------------------------------------------------
class Context:
    """What one training forward of ``module`` saved for its backward. Used once.

    ``saved`` is the module's own record; modules that compute more than the input gradient
    leave it here too (e.g. ``grad_hx`` of the recurrent layers)."""

    __slots__ = ("module", "saved", "used", "grad_hx")

    def __init__(self, module, saved):
        self.module, self.saved, self.used, self.grad_hx = module, saved, False, None

    def __repr__(self) -> str:
        return f"Context({type(self.module).__name__}, {'used' if self.used else 'pending'})"


_OWN_STATE = object()  # the context of a module that keeps its state itself (forward/backward only)
_local = threading.local()  # per thread: the no_grad depth


def grad_enabled() -> bool:
    return getattr(_local, "no_grad", 0) == 0


@contextlib.contextmanager
def no_grad():
    """Forwards in this block (this thread) keep nothing for backward, even in training mode."""
    _local.no_grad = getattr(_local, "no_grad", 0) + 1
    try:
        yield
    finally:
        _local.no_grad -= 1


def _pending(module, create: bool = True):
    """This thread's stack of pending contexts of ``module`` (a list), or None."""
    stack = module._threads.__dict__.get("pending")
    if stack is None and create:
        stack = module._threads.pending = []
    return stack


class Module:
    """Base class: registers parameters and child modules assigned as attributes."""

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_threads", threading.local())  # per thread: pending contexts

    # registration -------------------------------------------------------------------
    def __setattr__(self, name, value):
        params = self.__dict__.get("_parameters")
        if params is None:
            raise AttributeError("Module.__init__() must be called before assigning attributes")
        params.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            params[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        if param is None:
            self._parameters.pop(name, None)
            object.__setattr__(self, name, None)
        else:
            setattr(self, name, param)

    def add_module(self, name: str, module: "Module") -> None:
        setattr(self, name, module)

    # traversal ------------------------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        yield from self._modules.items()

    def children(self) -> Iterator["Module"]:
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        seen = set()
        for mod_name, mod in self.named_modules(prefix):
            for name, p in mod._parameters.items():
                if id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    # state ----------------------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Copies of every parameter, under PyTorch's names."""
        return OrderedDict((name, p.data.copy()) for name, p in self.named_parameters())

    def load_state_dict(self, state_dict, strict: bool = True):
        """Load arrays by name; validates everything before changing anything.

        Returns ``(missing_keys, unexpected_keys)``; with ``strict`` either one raises.
        """
        own = OrderedDict(self.named_parameters())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        staged = {}
        for name, p in own.items():
            if name not in state_dict:
                continue
            value = np.asarray(state_dict[name])
            if hasattr(state_dict[name], "detach"):  # a torch tensor
                value = state_dict[name].detach().cpu().numpy()
            if value.shape != p.shape:
                raise ValueError(f"load_state_dict: {name}: expected shape {p.shape}, got {value.shape}")
            staged[name] = value
        for name, value in staged.items():
            own[name].data = value
        return missing, unexpected

    # modes and gradients --------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        """Set training mode here and in every child. Changing the mode drops this thread's
        pending forwards of the module (their backward would mix the two modes)."""
        if bool(mode) != self.training:
            stack = _pending(self, create=False)
            if stack:
                stack.clear()
        object.__setattr__(self, "training", bool(mode))
        for child in self._modules.values():
            child.train(mode)  # through the child's own train(), which may do more (cells drop pending steps)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    # computation ----------------------------------------------------------------------
    # A module implements _forward(*args) -> (output, saved) and _backward(ctx, *grads); saved
    # is None when the forward keeps nothing (see saving()). The four public methods below are
    # the one policy of the module docstring, shared by every module.
    max_pending = 64  # more pending forwards than this (one module, one thread) warns: a leak

    def saving(self) -> bool:
        """Whether a forward now keeps what backward needs (training mode, outside no_grad)."""
        return self.training and grad_enabled()

    def forward(self, *args, **kwargs):
        out, saved = self._forward(*args, **kwargs)
        if saved is not None:
            stack = _pending(self)
            stack.append(Context(self, saved))
            if len(stack) == self.max_pending + 1:
                warnings.warn(f"{type(self).__name__}: {len(stack)} training forwards are waiting for their "
                              "backward in this thread; run evaluation under eval() or rnnfast.nn.no_grad(), or "
                              "call clear_pending()", RuntimeWarning, stacklevel=2)
        return out

    def backward(self, *grads, **kwargs):
        """Backward of this thread's newest pending forward of this module."""
        stack = _pending(self, create=False)
        if not stack:
            why = ("the module is in eval mode, which keeps no activations: call train() for training" if not self.training else
                   "call forward in training mode first (outside no_grad); backward runs once per forward, "
                   "and pending forwards belong to the thread that ran them")
            raise RuntimeError(f"{type(self).__name__}.backward: no pending forward to differentiate ({why})")
        ctx = stack.pop()
        ctx.used = True
        try:
            return self._backward(ctx, *grads, **kwargs)
        except (TypeError, ValueError):
            # A refused gradient (wrong shape or type) leaves the forward pending, so the caller can
            # retry: every module checks its arguments before it adds into any gradient, and the
            # parts of a composite that did run refuse their used contexts.
            ctx.used = False
            stack.append(ctx)
            raise

    def forward_ctx(self, *args, **kwargs):
        """``(output, ctx)``: a forward whose context the caller keeps (None when not saving)."""
        if type(self)._forward is Module._forward:  # a module written with forward/backward only
            out = self.forward(*args, **kwargs)
            return out, (Context(self, _OWN_STATE) if self.saving() else None)
        out, saved = self._forward(*args, **kwargs)
        return out, (None if saved is None else Context(self, saved))

    def backward_ctx(self, ctx, *grads, **kwargs):
        """Backward of the forward that produced ``ctx`` (from :meth:`forward_ctx`)."""
        if not isinstance(ctx, Context):
            raise TypeError(f"{type(self).__name__}.backward_ctx: ctx: expected the Context of a training "
                             f"forward_ctx, got {type(ctx).__name__} (eval mode and no_grad keep none)")
        if ctx.module is not self:
            raise ValueError(f"{type(self).__name__}.backward_ctx: ctx: belongs to a "
                             f"{type(ctx.module).__name__}, not to this module")
        if ctx.used:
            raise RuntimeError(f"{type(self).__name__}.backward_ctx: ctx: already used (backward runs once per "
                               "forward)")
        ctx.used = True
        if ctx.saved is _OWN_STATE:
            return self.backward(*grads, **kwargs)
        try:
            return self._backward(ctx, *grads, **kwargs)
        except (TypeError, ValueError):
            ctx.used = False  # as in backward: a refused gradient leaves the context usable
            raise

    def pending(self) -> int:
        """How many forwards of this module wait for their backward in this thread."""
        stack = _pending(self, create=False)
        return len(stack) if stack else 0

    def clear_pending(self) -> None:
        """Drop this thread's pending forwards of this module and its children."""
        for m in self.modules():
            stack = _pending(m, create=False)
            if stack:
                stack.clear()

    def _forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}._forward")

    def _backward(self, ctx, *grads, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}._backward")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # copies -----------------------------------------------------------------------------
    def __getstate__(self):
        """Pickle and deepcopy: parameters, children and settings; no pending contexts or caches
        (attributes listed in ``_transient`` are rebuilt by ``_rebuild`` on load)."""
        state = self.__dict__.copy()
        for name in ("_threads",) + self._transient:
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        object.__setattr__(self, "_threads", threading.local())
        self._rebuild()

    _transient: tuple = ()

    def _rebuild(self) -> None:
        pass

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in self._modules.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        return lines[0] + ")" if len(lines) == 1 else "\n".join(lines) + "\n)"


class DropoutRng:
    """Mixin for modules that draw their own dropout masks from ``self._dropout_rng``: seeding and
    the generator state that checkpoints save, so a resumed run draws the same masks."""

    def seed_dropout(self, seed) -> None:
        """Make the dropout masks reproducible."""
        self._dropout_rng = np.random.default_rng(seed)

    def get_rng_state(self) -> dict:
        return self._dropout_rng.bit_generator.state

    def set_rng_state(self, state: dict) -> None:
        self._dropout_rng.bit_generator.state = state
