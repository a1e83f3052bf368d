"""patch(model): swap the torch.nn recurrent modules of an existing model for rnnfast.torch's, in place."""
from __future__ import annotations

import warnings

import torch

from . import cells, modules

SWAPS = {torch.nn.RNN: modules.RNN, torch.nn.LSTM: modules.LSTM, torch.nn.GRU: modules.GRU,
         torch.nn.RNNCell: cells.RNNCell, torch.nn.LSTMCell: cells.LSTMCell, torch.nn.GRUCell: cells.GRUCell}


def _unsupported(module) -> str | None:
    for p in module.parameters():
        if p.device.type != "cpu" or p.dtype != torch.float32:
            return f"parameters on {p.device} as {p.dtype}, not CPU float32"
    return None


def patch(model: torch.nn.Module) -> torch.nn.Module:
    """Make every torch.nn.RNN/LSTM/GRU (and RNNCell/LSTMCell/GRUCell) in ``model`` (``model``
    itself included) run on rnnfast's kernels; returns ``model``.

    The modules keep their identity, weights, hooks and every reference to their parameters (an
    optimizer made before ``patch`` keeps working): only their class changes, to the rnnfast.torch
    subclass. Subclasses of the torch.nn modules (a custom forward) are left alone, and so are
    modules the kernels cannot run (parameters not CPU float32), with a warning
    naming them.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    skipped = []
    for name, module in model.named_modules():
        target = SWAPS.get(type(module))
        if target is None:
            continue
        why = _unsupported(module)
        if why:
            skipped.append(f"{name or '<model>'} ({why})")
            continue
        module.__class__ = target
    if skipped:
        warnings.warn("rnnfast.torch.patch: left as torch.nn (not supported by rnnfast's kernels): "
                      + ", ".join(skipped), RuntimeWarning, stacklevel=2)
    return model
