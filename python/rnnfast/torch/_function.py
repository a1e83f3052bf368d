"""The torch.autograd.Function of a whole layer stack: forward and backward in rnnfast's kernels."""
from __future__ import annotations

import numpy as np
import torch

from ._kernels import array, stack_backward, stack_forward


class StackFunction(torch.autograd.Function):
    """apply(spec, state, scatter, lengths, x, h0, c0, *flat_weights) -> (y, h_n[, c_n]), time-major."""

    @staticmethod
    def forward(ctx, spec, state, scatter, lengths, x, h0, c0, *flat):
        y, hn, cn, saved = stack_forward(spec, state, flat, array(x), lengths, _opt(h0), _opt(c0), True, scatter)
        ctx.spec, ctx.state, ctx.saved = spec, state, saved
        ctx.save_for_backward(x, *flat)  # torch's in-place-modification checks, as torch.nn's RNNs have
        ctx.set_materialize_grads(False)
        out = (torch.from_numpy(y), torch.from_numpy(hn))
        return out + (torch.from_numpy(cn),) if spec.lstm else out

    @staticmethod
    def backward(ctx, dy, dhn, dcn=None):
        saved = take_saved(ctx, "RNN forward")
        x, *flat = ctx.saved_tensors
        T, B = x.shape[0], x.shape[1]
        dy = np.zeros((T, B, ctx.spec.D * ctx.spec.H), np.float32) if dy is None else array(_f32(dy))
        dx, dh0, dc0, grads = stack_backward(ctx.spec, ctx.state, flat, saved, dy, _opt(dhn), _opt(dcn))
        need = ctx.needs_input_grad
        return (None, None, None, None, torch.from_numpy(dx) if need[4] else None,
                torch.from_numpy(dh0) if need[5] else None,
                torch.from_numpy(dc0) if dc0 is not None and need[6] else None, *grads)


def take_saved(ctx, what: str):
    """``ctx.saved``, once. Backward runs with grad mode on only under create_graph=True (a double
    backward), which the kernels cannot differentiate; a second backward (retain_graph=True) would
    find the activations freed or reused."""
    if torch.is_grad_enabled():
        raise RuntimeError("rnnfast.torch: double backward (create_graph=True through an rnnfast RNN) is not "
                           "supported: the kernels have no second derivative; use torch.nn for this part")
    saved, ctx.saved = ctx.saved, None
    if saved is None:
        raise RuntimeError(f"rnnfast.torch: backward through this {what} already ran; its activations are freed "
                           "(retain_graph=True is not supported: run the forward again)")
    return saved


def _f32(t):
    return t.to(torch.float32).contiguous()


def _opt(t):
    return None if t is None else array(_f32(t))
