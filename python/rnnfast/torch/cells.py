"""RNNCell, LSTMCell and GRUCell: subclasses of torch.nn's whose step and its backward run in
rnnfast's kernels. Packed weights are kept between steps while the weights' versions hold."""
from __future__ import annotations

import numpy as np
import torch

from .. import _core
from ._function import take_saved
from ._kernels import array, torch_threads, zeros_like
from .modules import KernelState, check_supported


class CellFunction(torch.autograd.Function):
    """apply(module, x (B, I), h0, c0, w_ih, w_hh, b_ih, b_hh) -> h' (and c' for an LSTM cell)."""

    @staticmethod
    def forward(ctx, module, x, h0, c0, *weights):
        packed = module._rnnfast_state().packed("train", module._cell, weights + (None,) * (4 - len(weights)), True)
        cache = _core.TrainCache()
        h, c = _step(module, packed, x, h0, c0, cache)
        ctx.saved, ctx.lstm = (packed, cache), c is not None
        ctx.save_for_backward(x, *weights)
        ctx.set_materialize_grads(False)
        return (h, c) if ctx.lstm else h

    @staticmethod
    @torch_threads
    def backward(ctx, dh, dc=None):
        packed, cache = take_saved(ctx, "cell step")
        x, *weights = ctx.saved_tensors
        B, I = x.shape
        H = weights[1].shape[1]
        dy = np.zeros((1, B, H), np.float32) if dh is None else array(dh.contiguous()).reshape(1, B, H)
        dcn = None if dc is None else array(dc.contiguous())
        dx = np.empty((1, B, I), np.float32)
        dh0 = np.empty((B, H), np.float32)
        dc0 = np.empty_like(dh0) if ctx.lstm else None
        grads = [zeros_like(w) for w in weights]
        g = [array(t) for t in grads] + [None] * (4 - len(grads))
        _core.layer_backward(packed, cache, array(x).reshape(1, B, I), dy, 0, None, dcn, dx, False, dh0, dc0, *g)
        need = ctx.needs_input_grad
        return (None, torch.from_numpy(dx[0]) if need[1] else None, torch.from_numpy(dh0) if need[2] else None,
                torch.from_numpy(dc0) if ctx.lstm and need[3] else None, *grads)


@torch_threads
def _step(module, packed, x, h0, c0, cache):
    """One kernel step on tensors (B, I), (B, H) or None; returns h' and c' (None but for LSTM)."""
    B, H = x.shape[0], module.hidden_size
    y = np.empty((1, B, H), np.float32)
    h = np.empty((B, H), np.float32)
    c = np.empty_like(h) if module._cell == "lstm" else None
    _core.layer_forward(packed, array(x).reshape(1, B, -1), None, False, None if h0 is None else array(h0),
                        None if c0 is None else array(c0), y, 0, h, c, cache)
    return torch.from_numpy(h), (None if c is None else torch.from_numpy(c))


class _CellBase(KernelState):
    _kind = "RNNCell"

    @property
    def _cell(self) -> str:
        if self._kind == "RNNCell":
            return "rnn_" + self.nonlinearity
        return self._kind[:-4].lower()

    def flatten_parameters(self) -> None:
        """Drop the packed weights (after edits through ``.data``, which versions do not see)."""
        self.__dict__.pop("_rnnfast", None)

    def forward(self, input, hx=None):
        lstm = self._kind == "LSTMCell"
        kind = self._kind
        weights = [self.weight_ih, self.weight_hh] + ([self.bias_ih, self.bias_hh] if self.bias else [])
        check_supported(self, [*self.named_parameters(), ("input", input)], kind)
        if input.dim() not in (1, 2):
            raise ValueError(f"{kind}: Expected input to be 1D or 2D, got {input.dim()}D instead")
        if input.shape[-1] != self.input_size or input.numel() == 0:
            raise ValueError(f"{kind}: input: expected shape (B, {self.input_size}) with B >= 1, got "
                             f"{tuple(input.shape)}")
        batched = input.dim() == 2
        x = (input if batched else input.unsqueeze(0)).contiguous()
        parts = [] if hx is None else (list(hx) if lstm else [hx])
        if lstm and hx is not None and len(parts) != 2:
            raise TypeError(f"{kind}: hx: expected a tuple (h, c), got {len(parts)} tensors")
        expected = (x.shape[0], self.hidden_size) if batched else (self.hidden_size,)
        for i, h in enumerate(parts):
            name = f"hx[{i}]" if lstm else "hx"
            if not isinstance(h, torch.Tensor) or tuple(h.shape) != expected:
                got = tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
                raise ValueError(f"{kind}: {name}: expected shape {expected}, got {got}")
            check_supported(self, [(name, h)], kind)
        parts = [(h if batched else h.unsqueeze(0)).contiguous() for h in parts]
        h0, c0 = (parts + [None, None])[:2] if parts else (None, None)
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in [x, h0, c0] + weights):
            out = CellFunction.apply(self, x, h0, c0, *weights)
            h, c = out if lstm else (out, None)
        else:
            packed = self._rnnfast_state().packed("eval", self._cell, weights + [None] * (4 - len(weights)), False,
                                                  step=True)
            h, c = _step(self, packed, x, h0, c0, None)
        if not batched:
            h, c = h[0], (None if c is None else c[0])
        return (h, c) if lstm else h


class RNNCell(_CellBase, torch.nn.RNNCell):
    """torch.nn.RNNCell (tanh or relu) on rnnfast's kernels."""

    _kind = "RNNCell"


class LSTMCell(_CellBase, torch.nn.LSTMCell):
    """torch.nn.LSTMCell on rnnfast's kernels: returns ``(h', c')``."""

    _kind = "LSTMCell"


class GRUCell(_CellBase, torch.nn.GRUCell):
    """torch.nn.GRUCell on rnnfast's kernels."""

    _kind = "GRUCell"
