"""RNNCell, LSTMCell and GRUCell: one time step, PyTorch's conventions, on the C++ kernels.

A cell may run many steps before their backward calls (a decoder loop): pending forwards form
a stack (per thread) and each backward takes the newest, so backward calls come in reverse
order of the forwards, as back-propagation through time does (module.py has the policy).
"""
from __future__ import annotations

import math

import numpy as np

from .. import _core
from ._checks import MAX_HIDDEN, MAX_SIZE, as_float_array, check_int, private_copy
from .module import Module, Parameter, accumulating
from .recurrent import _GATES, _PackCache


class _CellBase(Module):
    def __init__(self, cell: str, input_size: int, hidden_size: int, bias: bool = True, seed=None,
                 peepholes: bool = False, linear_before_reset: bool = True):
        super().__init__()
        self.input_size = check_int(input_size, "input_size", maximum=MAX_SIZE)
        self.hidden_size = check_int(hidden_size, "hidden_size", maximum=MAX_HIDDEN)
        self.bias = bool(bias)
        self.cell = cell
        rng = np.random.default_rng(seed)
        bound = 1.0 / math.sqrt(hidden_size)
        gates = _GATES[cell] * hidden_size
        self.weight_ih = Parameter(rng.uniform(-bound, bound, (gates, input_size)))
        self.weight_hh = Parameter(rng.uniform(-bound, bound, (gates, hidden_size)))
        if self.bias:
            self.bias_ih = Parameter(rng.uniform(-bound, bound, gates))
            self.bias_hh = Parameter(rng.uniform(-bound, bound, gates))
        else:
            self.bias_ih = self.bias_hh = None
        self.peepholes = bool(peepholes)
        self.linear_before_reset = bool(linear_before_reset)
        # p_i, p_f, p_o (the LSTM layer's weight_p_l{k}); None without peepholes
        self.weight_p = Parameter(rng.uniform(-bound, bound, (3, hidden_size))) if self.peepholes else None
        self._rebuild()
        self.grad_hx = None

    max_pending = 100_000  # a decoder loop keeps one pending forward per step
    _transient = ("_pack",)

    def _rebuild(self) -> None:
        # Cells pickled before the variants existed: the default cells.
        self.__dict__.setdefault("peepholes", False)
        self.__dict__.setdefault("linear_before_reset", True)
        self.__dict__.setdefault("weight_p", None)
        self._pack = _PackCache()

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False") + \
            (", peepholes=True" if self.peepholes else "") + \
            ("" if self.linear_before_reset else ", linear_before_reset=False")

    def _params(self):
        return (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)

    def _state(self, value, name, batch, unbatched):
        shape = (self.hidden_size,) if unbatched else (batch, self.hidden_size)
        return np.ascontiguousarray(as_float_array(value, name, shape=shape)).reshape(batch, self.hidden_size)

    def forward(self, x, hx=None):
        """One step: ``x`` (B, input_size) or unbatched (input_size,), ``hx`` the state (zeros when
        None; an LSTMCell takes ``(h, c)``). Returns h' (or ``(h', c')``) of shape (B, hidden_size)."""
        return super().forward(x, hx)

    def _forward(self, given, hx=None):
        x = as_float_array(given, "input")
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size or x.size == 0:
            raise ValueError(f"input: expected shape (B, {self.input_size}) or ({self.input_size},), got {x.shape}")
        unbatched = x.ndim == 1
        B = 1 if unbatched else x.shape[0]
        lstm = self.cell == "lstm"
        h0 = c0 = None
        if hx is not None:
            if lstm:
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise TypeError("hx: expected a tuple (h, c) for an LSTMCell")
                h0, c0 = self._state(hx[0], "hx[0]", B, unbatched), self._state(hx[1], "hx[1]", B, unbatched)
            else:
                h0 = self._state(hx, "hx", B, unbatched)
        training = self.saving()
        xt = np.ascontiguousarray(x.reshape(1, B, self.input_size))
        if training:
            xt = private_copy(xt, given)
        packed = self._pack.get(self.cell, self._params(), training, step=not training, peephole=self.weight_p,
                                linear_before_reset=self.linear_before_reset)
        y = np.empty((1, B, self.hidden_size), np.float32)
        h = np.empty((B, self.hidden_size), np.float32)
        c = np.empty_like(h) if lstm else None
        cache = _core.TrainCache() if training else None
        _core.layer_forward(packed, xt, None, False, h0, c0, y, 0, h, c, cache)
        if unbatched:
            h = h[0]
            c = None if c is None else c[0]
        return ((h, c) if lstm else h), ((packed, cache, xt, unbatched) if training else None)

    def backward(self, grad_h, grad_c=None):
        """Gradient of the input of this thread's newest pending step; sets ``grad_hx`` (the
        gradient of the step's initial state). ``grad_h`` may be None (zeros)."""
        return super().backward(grad_h, grad_c)

    def _backward(self, ctx, grad_h, grad_c=None):
        packed, cache, xt, unbatched = ctx.saved
        B, H = xt.shape[1], self.hidden_size
        shape = (H,) if unbatched else (B, H)
        dy = np.zeros((1, B, H), np.float32) if grad_h is None else \
            np.ascontiguousarray(as_float_array(grad_h, "grad_h", shape=shape)).reshape(1, B, H)
        lstm = self.cell == "lstm"
        dcn = None
        if grad_c is not None:
            if not lstm:
                raise TypeError("grad_c: only an LSTMCell has a cell state")
            dcn = np.ascontiguousarray(as_float_array(grad_c, "grad_c", shape=shape)).reshape(B, H)
        dx = np.empty(xt.shape, np.float32)
        dh0 = np.empty((B, H), np.float32)
        dc0 = np.empty_like(dh0) if lstm else None
        b_ih, b_hh = self.bias_ih, self.bias_hh
        with accumulating(*self._params(), self.weight_p):
            _core.layer_backward(packed, cache, xt, dy, 0, None, dcn, dx, False, dh0, dc0, self.weight_ih.grad,
                                 self.weight_hh.grad, None if b_ih is None else b_ih.grad,
                                 None if b_hh is None else b_hh.grad,
                                 None if self.weight_p is None else self.weight_p.grad)
        if unbatched:
            dh0 = dh0[0]
            dc0 = None if dc0 is None else dc0[0]
        ctx.grad_hx = self.grad_hx = (dh0, dc0) if lstm else dh0
        return dx[0, 0] if unbatched else dx[0]


class RNNCell(_CellBase):
    """h' = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh), act = tanh or relu (as torch.nn.RNNCell)."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", *, seed=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__("rnn_" + nonlinearity, input_size, hidden_size, bias, seed)
        self.nonlinearity = nonlinearity


class LSTMCell(_CellBase):
    """One LSTM step (as torch.nn.LSTMCell): returns (h', c'). ``peepholes=True``: the peephole
    LSTM of ``nn.LSTM(peepholes=True)``, with ``weight_p`` (3, H) rows p_i, p_f, p_o."""

    def __init__(self, input_size, hidden_size, bias=True, *, seed=None, peepholes=False):
        super().__init__("lstm", input_size, hidden_size, bias, seed, peepholes=peepholes)


class GRUCell(_CellBase):
    """One GRU step (as torch.nn.GRUCell). ``linear_before_reset=False``: Cho et al.'s GRU, as
    ``nn.GRU(linear_before_reset=False)``."""

    def __init__(self, input_size, hidden_size, bias=True, *, seed=None, linear_before_reset=True):
        super().__init__("gru", input_size, hidden_size, bias, seed, linear_before_reset=linear_before_reset)
