"""RNN, LSTM and GRU: subclasses of torch.nn's, whose forward and backward run in rnnfast's kernels.

Everything but ``forward`` is torch's own (constructor, initialisation, parameter names,
``state_dict``, ``repr``), so a model that swaps ``torch.nn.LSTM`` for ``rnnfast.torch.LSTM``
keeps its weights, checkpoints and optimizer setup. The numbers match torch.nn's to float32
rounding (see tests/test_torch_dropin.py).
"""
from __future__ import annotations

import torch
from torch.nn.utils.rnn import PackedSequence

from ._function import StackFunction
from ._kernels import Spec, State, array, stack_forward
from ._packed import Layout


def check_supported(module, tensors, kind: str) -> None:
    """Clear errors for what the kernels cannot run: non-CPU tensors, dtypes other than float32."""
    for name, t in tensors:
        if t is None:
            continue
        if t.device.type != "cpu":
            raise ValueError(f"rnnfast.torch.{kind}: {name}: expected a CPU tensor, got device {t.device} "
                             f"(rnnfast runs on the CPU; keep torch.nn.{kind} for other devices)")
        if t.dtype != torch.float32:
            raise TypeError(f"rnnfast.torch.{kind}: {name}: expected dtype torch.float32, got {t.dtype} "
                            "(the kernels are float32: convert with .float(), or keep torch.nn."
                            f"{kind} for other dtypes)")


class KernelState:
    """Mixin: the per-module rnnfast state (made on first use, so patch() can swap classes in
    place), dropped on pickling and by flatten_parameters()."""

    def _rnnfast_state(self) -> State:
        state = self.__dict__.get("_rnnfast")
        if state is None:
            state = self.__dict__["_rnnfast"] = State()
        return state

    def flatten_parameters(self) -> None:
        """Drop the packed weights (call this after editing weights through ``.data``, which
        the tensors' version counters do not see)."""
        self.__dict__.pop("_rnnfast", None)
        super().flatten_parameters()

    def __getstate__(self):
        state = super().__getstate__().copy()
        state.pop("_rnnfast", None)
        return state


# rnnfast.nn's cell variants, which torch.nn has not: asking for one names where it exists.
_NN_ONLY = ("peepholes", "linear_before_reset", "direction", "residual")


class _RNNBase(KernelState):
    _kind = "RNN"

    def __init__(self, *args, **kwargs):
        for name in _NN_ONLY:
            if name in kwargs:
                raise ValueError(f"rnnfast.torch.{self._kind}: {name}: torch.nn.{self._kind} has no such option "
                                 f"(rnnfast.torch mirrors torch.nn); use rnnfast.nn.{self._kind}(..., {name}=...)")
        super().__init__(*args, **kwargs)

    def forward(self, input, hx=None):
        self._update_flat_weights()
        flat = self._flat_weights
        kind = self._kind
        lstm = kind == "LSTM"
        layout = None
        if isinstance(input, PackedSequence):
            data, batch_sizes, sorted_indices, unsorted_indices = input
            check_supported(self, [*zip(self._flat_weights_names, flat), ("input", data)], kind)
            layout = Layout(batch_sizes, sorted_indices)
            self._check_args(data, hx, batch_sizes)
            x, unbatched = layout.pad(data), False
        else:
            check_supported(self, [*zip(self._flat_weights_names, flat), ("input", input)], kind)
            if input.dim() not in (2, 3):
                raise ValueError(f"{kind}: Expected input to be 2D or 3D, got {input.dim()}D instead")
            unbatched = input.dim() == 2
            if unbatched:
                input = input.unsqueeze(0 if self.batch_first else 1)
                hx = _unsqueeze_state(hx, lstm)
            self._check_args(input, hx, None)
            x = input.transpose(0, 1) if self.batch_first else input
        h0, c0 = (hx if lstm else (hx, None)) if hx is not None else (None, None)
        check_supported(self, [("hx[0]" if lstm else "hx", h0), ("hx[1]", c0)], kind)
        y, hn, cn = self._run(x, layout, h0, c0, flat)
        hidden = (hn, cn) if lstm else hn
        if layout is not None:
            return PackedSequence(layout.pack(y), batch_sizes, sorted_indices, unsorted_indices), hidden
        if unbatched:
            return y[:, 0], ((hn[:, 0], cn[:, 0]) if lstm else hn[:, 0])
        return (y.transpose(0, 1) if self.batch_first else y), hidden

    def _check_args(self, input, hx, batch_sizes):
        if hx is None:
            self.check_input(input, batch_sizes)
        else:
            if self._kind == "LSTM" and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
                raise TypeError(f"LSTM: hx: expected a tuple (h_0, c_0), got {type(hx).__name__}")
            if self._kind != "LSTM" and not isinstance(hx, torch.Tensor):
                raise TypeError(f"{self._kind}: hx: expected a tensor, got {type(hx).__name__}")
            self.check_forward_args(input, hx, batch_sizes)

    def _run(self, x, layout, h0, c0, flat):
        """Time-major (T, B, I) in, time-major y, h_n, c_n out (c_n None except for an LSTM)."""
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"{self._kind}: input: expected a non-empty sequence and batch, got {x.shape[0]} steps "
                             f"of batch {x.shape[1]}")
        spec = Spec(self, self.dropout if self.training else 0.0)
        state = self._rnnfast_state()
        x = x.contiguous()
        h0 = None if h0 is None else h0.contiguous()
        c0 = None if c0 is None else c0.contiguous()
        lengths = None if layout is None else layout.lengths
        scatter = None if layout is None else layout.rows
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, h0, c0, *flat)):
            out = StackFunction.apply(spec, state, scatter, lengths, x, h0, c0, *flat)
            return out if spec.lstm else out + (None,)
        # no graph (no_grad, inference_mode, nothing requires grad): the kernels keep no activations
        y, hn, cn, _ = stack_forward(spec, state, flat, array(x), lengths, None if h0 is None else array(h0),
                                     None if c0 is None else array(c0), False, scatter)
        return torch.from_numpy(y), torch.from_numpy(hn), (None if cn is None else torch.from_numpy(cn))


def _unsqueeze_state(hx, lstm):
    """An unbatched state (L*D, H) gets its batch axis, with torch's error for other ranks."""
    if hx is None:
        return None
    parts = hx if lstm else (hx,)
    if any(not isinstance(h, torch.Tensor) or h.dim() != 2 for h in parts):
        dims = tuple(h.dim() if isinstance(h, torch.Tensor) else type(h).__name__ for h in parts)
        raise RuntimeError(f"For unbatched 2-D input, hx should also be 2-D but got {dims}")
    return tuple(h.unsqueeze(1) for h in parts) if lstm else hx.unsqueeze(1)


class RNN(_RNNBase, torch.nn.RNN):
    """torch.nn.RNN (tanh or relu) on rnnfast's kernels: same arguments, parameters, state_dict
    and return values; PackedSequence in, PackedSequence out."""

    _kind = "RNN"


class LSTM(_RNNBase, torch.nn.LSTM):
    """torch.nn.LSTM on rnnfast's kernels (``proj_size`` too). Returns ``(output, (h_n, c_n))``."""

    _kind = "LSTM"


class GRU(_RNNBase, torch.nn.GRU):
    """torch.nn.GRU on rnnfast's kernels: same arguments, parameters, state_dict and return values."""

    _kind = "GRU"
