"""PyTorch interop: convert torch modules to rnnfast ones and move weights both ways.

rnnfast uses PyTorch's parameter names, shapes and gate orders (docs/ARCHITECTURE.md), so a state dict
moves unchanged. torch is imported only when a function needs it (``to_torch_state_dict``) or is
handed a torch object (which means torch is already loaded); importing this module never loads it.
"""
from __future__ import annotations

import sys
from collections import OrderedDict

import numpy as np

from . import nn as rnn

__all__ = ["from_torch", "to_torch_state_dict", "load_torch_state_dict"]


def _torch_nn():
    """torch.nn, imported lazily (torch is a large optional dependency)."""
    try:
        import torch.nn
    except ImportError:
        raise ImportError("this function needs PyTorch: pip install torch") from None
    return torch.nn


def _to_numpy(value, name: str) -> np.ndarray:
    """A torch tensor (any device or float dtype) or an array-like as a float32 numpy array."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor: no torch import needed
        t = value.detach().cpu()
        if t.is_floating_point():
            t = t.float()  # bfloat16/float16/float64 -> float32 (numpy has no bfloat16)
        value = t.numpy()
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name}: expected a numeric tensor or array, got dtype {arr.dtype}")
    return np.array(arr, dtype=np.float32, order="C")


def _numpy_state(state_dict, where: str) -> "OrderedDict[str, np.ndarray]":
    if not hasattr(state_dict, "items"):
        raise TypeError(f"{where}: state_dict: expected a mapping name -> tensor/array, got {type(state_dict).__name__}")
    return OrderedDict((str(k), _to_numpy(v, f"{where}: state_dict[{k!r}]")) for k, v in state_dict.items())


def _is_torch_module(obj) -> bool:
    torch = sys.modules.get("torch")  # a torch object implies torch is loaded; never import it here
    return torch is not None and isinstance(obj, torch.nn.Module)


# torch -> rnnfast ------------------------------------------------------------------------------
def from_torch(obj, *, kind: str | None = None, nonlinearity: str = "tanh", batch_first: bool = False):
    """The rnnfast equivalent of a torch module, with the same weights, configuration and mode.

    Supported: ``nn.RNN/LSTM/GRU`` (stacked, bidirectional, batch_first, no bias, dropout, an
    LSTM's ``proj_size``),
    ``nn.RNNCell/LSTMCell/GRUCell``, ``nn.Embedding`` (padding_idx; a frozen weight gives
    ``freeze=True``), ``nn.Linear``, ``nn.Dropout``, ``nn.LayerNorm`` and ``nn.Sequential`` of
    these. Anything else, or an option rnnfast lacks (e.g. ``Embedding(max_norm=...)``), raises.

    Parameters
    ----------
    obj : torch.nn.Module or dict of str to tensor or ndarray
        A module, or the state dict of a single recurrent layer, cell or Linear (the
        configuration is then read from the names and shapes).
    kind : str, optional
        For a state dict: 'RNN', 'LSTM', 'GRU', 'RNNCell', 'LSTMCell', 'GRUCell', 'Linear' or
        'Embedding' (needed to tell a bias-free Linear from an Embedding).
    nonlinearity : {'tanh', 'relu'}, default 'tanh'
        For an RNN state dict.
    batch_first : bool, default False
        For a recurrent-layer state dict.

    Returns
    -------
    rnnfast.nn.Module
        Weights copied as float32 arrays of PyTorch's shapes.

    Raises
    ------
    TypeError, ValueError
        An unsupported module or option, or a state dict that fits no kind.
    """
    if _is_torch_module(obj):
        return _convert_module(obj, "module")
    if hasattr(obj, "items") and not isinstance(obj, rnn.Module):
        return _from_state_dict(_numpy_state(obj, "from_torch"), kind, nonlinearity, batch_first)
    raise TypeError(f"from_torch: expected a torch.nn.Module or a state dict, got {type(obj).__name__}")


def _convert_module(m, path: str):
    nn = _torch_nn()
    where = f"from_torch: {path} ({type(m).__name__})"
    if isinstance(m, nn.Sequential):
        parts = OrderedDict((name, _convert_module(child, f"{path}.{name}")) for name, child in m.named_children())
        out = rnn.Sequential(parts)
    elif isinstance(m, (nn.RNN, nn.LSTM, nn.GRU)):
        kw = dict(num_layers=m.num_layers, bias=m.bias, batch_first=m.batch_first, dropout=float(m.dropout),
                  bidirectional=m.bidirectional, seed=0)
        if isinstance(m, nn.RNN):
            out = rnn.RNN(m.input_size, m.hidden_size, nonlinearity=m.mode[4:].lower(), **kw)
        else:
            out = rnn.LSTM(m.input_size, m.hidden_size, proj_size=m.proj_size, **kw) if isinstance(m, nn.LSTM) \
                else rnn.GRU(m.input_size, m.hidden_size, **kw)
    elif isinstance(m, nn.RNNCell):
        out = rnn.RNNCell(m.input_size, m.hidden_size, bias=m.bias, nonlinearity=m.nonlinearity, seed=0)
    elif isinstance(m, (nn.LSTMCell, nn.GRUCell)):
        out = (rnn.LSTMCell if isinstance(m, nn.LSTMCell) else rnn.GRUCell)(m.input_size, m.hidden_size,
                                                                          bias=m.bias, seed=0)
    elif isinstance(m, nn.Embedding):
        if m.max_norm is not None:
            raise ValueError(f"{where}: max_norm: rnnfast's Embedding does not renormalise rows, expected None, "
                             f"got {m.max_norm}")
        if m.scale_grad_by_freq:
            raise ValueError(f"{where}: scale_grad_by_freq: not supported by rnnfast, expected False, got True")
        out = rnn.Embedding(m.num_embeddings, m.embedding_dim, padding_idx=m.padding_idx,
                            freeze=not m.weight.requires_grad, seed=0)
    elif isinstance(m, nn.Linear):
        out = rnn.Linear(m.in_features, m.out_features, bias=m.bias is not None, seed=0)
    elif isinstance(m, nn.Dropout) and type(m) is nn.Dropout:  # not Dropout1d/2d/AlphaDropout
        out = rnn.Dropout(m.p)
    elif isinstance(m, nn.LayerNorm):
        out = rnn.LayerNorm(m.normalized_shape, eps=m.eps, elementwise_affine=m.elementwise_affine,
                            bias=m.bias is not None)
    else:
        raise TypeError(f"{where}: unsupported module type; supported are RNN, LSTM, GRU, RNNCell, LSTMCell, "
                        "GRUCell, Embedding, Linear, Dropout, LayerNorm and Sequential of these")
    if not isinstance(m, nn.Sequential):
        own = {k: v for k, v in m.state_dict().items()}
        out.load_state_dict(_numpy_state(own, where), strict=True)
    out.train(m.training)
    return out


_KINDS = {"RNN": 1, "LSTM": 4, "GRU": 3, "RNNCell": 1, "LSTMCell": 4, "GRUCell": 3}


def _from_state_dict(sd, kind, nonlinearity, batch_first):
    where = "from_torch"
    if kind is not None and kind not in (*_KINDS, "Linear", "Embedding"):
        raise ValueError(f"{where}: kind: expected one of {[*_KINDS, 'Linear', 'Embedding']}, got {kind!r}")
    if any(k.startswith("weight_p_l") for k in sd):
        raise ValueError(f"{where}: state_dict has peephole weights (weight_p_*), which no torch module has: build "
                         "rnnfast.nn.LSTM(..., peepholes=True) and call its load_state_dict")
    if "weight_ih_l0" in sd or "weight_ih" in sd:
        stacked = "weight_ih_l0" in sd
        sfx = "_l0" if stacked else ""
        w_ih, w_hh = sd["weight_ih" + sfx], sd.get("weight_hh" + sfx)
        if w_hh is None or w_ih.ndim != 2 or w_hh.ndim != 2:
            raise ValueError(f"{where}: state_dict: expected 2-D weight_ih{sfx} and weight_hh{sfx}")
        w_hr = sd.get("weight_hr" + sfx)  # an LSTM's projection (proj_size, H); W_hh is then (4H, proj_size)
        if w_hr is not None and w_hr.ndim != 2:
            raise ValueError(f"{where}: state_dict: expected a 2-D weight_hr{sfx}, got shape {w_hr.shape}")
        hidden, inputs = (w_hh.shape[1] if w_hr is None else w_hr.shape[1]), w_ih.shape[1]
        proj = {} if w_hr is None else {"proj_size": w_hr.shape[0]}
        gates = w_ih.shape[0] // hidden
        if proj and (gates != 4 or kind not in (None, "LSTM")):
            raise ValueError(f"{where}: state_dict: weight_hr{sfx} (a projection) needs an LSTM's weights, got "
                             f"weight_ih{sfx} of shape {w_ih.shape} for hidden size {hidden} and kind {kind!r}")
        names = {1: "RNN", 3: "GRU", 4: "LSTM"}
        if kind is None:
            if gates not in names or w_ih.shape[0] % hidden:
                raise ValueError(f"{where}: state_dict: weight_ih{sfx} has {w_ih.shape[0]} rows for hidden size "
                                 f"{hidden}: not 1, 3 or 4 gates (RNN, GRU, LSTM)")
            kind = names[gates] + ("" if stacked else "Cell")
        elif kind.endswith("Cell") == stacked or _KINDS.get(kind) != gates:
            raise ValueError(f"{where}: kind: {kind!r} does not fit a state dict with weight_ih{sfx} of shape "
                             f"{w_ih.shape} and hidden size {hidden}")
        bias = ("bias_ih" + sfx) in sd
        rnn_kw = {"nonlinearity": nonlinearity} if kind in ("RNN", "RNNCell") else {}
        if stacked:
            layers = 0
            while f"weight_ih_l{layers}" in sd:
                layers += 1
            model = getattr(rnn, kind)(inputs, hidden, num_layers=layers, bias=bias, batch_first=batch_first,
                                       bidirectional="weight_ih_l0_reverse" in sd, seed=0, **rnn_kw, **proj)
        else:
            model = getattr(rnn, kind)(inputs, hidden, bias=bias, seed=0, **rnn_kw)
    elif "weight" in sd and sd["weight"].ndim == 2:
        if kind is None:
            if "bias" not in sd:
                raise ValueError(f"{where}: a state dict with only 'weight' may be a Linear without bias or an "
                                 "Embedding: pass kind='Linear' or kind='Embedding'")
            kind = "Linear"
        rows, cols = sd["weight"].shape
        if kind == "Linear":
            model = rnn.Linear(cols, rows, bias="bias" in sd, seed=0)
        elif kind == "Embedding":
            model = rnn.Embedding(rows, cols, seed=0)
        else:
            raise ValueError(f"{where}: kind: {kind!r} does not fit a state dict with a 2-D 'weight'")
    else:
        raise ValueError(f"{where}: cannot tell the module from the state dict keys {list(sd)[:6]}; pass a "
                         "torch module instead (Sequential and other containers need their module)")
    model.load_state_dict(sd, strict=True)
    return model


# rnnfast -> torch ------------------------------------------------------------------------------
def to_torch_state_dict(model) -> "OrderedDict":
    """The model's weights as a state dict of torch tensors, for ``torch_module.load_state_dict``.

    Parameters
    ----------
    model : rnnfast.nn.Module

    Returns
    -------
    OrderedDict of str to torch.Tensor
        float32 CPU tensors (copies), with PyTorch's names and shapes.
    """
    if not isinstance(model, rnn.Module):
        raise TypeError(f"to_torch_state_dict: model: expected an rnnfast.nn.Module, got {type(model).__name__}")
    _check_torch_has_cells(model, "to_torch_state_dict")
    residual = [name for name, m in model.named_modules() if getattr(m, "residual", False) is True]
    if residual:
        raise ValueError(f"to_torch_state_dict: model: {residual[0] or 'the model'} is a residual stack "
                         "(residual=True), which torch.nn's RNN/LSTM/GRU do not have: its weights in a torch "
                         "module would compute something else")
    _torch_nn()
    import torch
    return OrderedDict((name, torch.from_numpy(arr)) for name, arr in model.state_dict().items())


def _check_torch_has_cells(model, where: str) -> None:
    """torch.nn has no peephole LSTM, no Cho et al. GRU and no reverse-only layer: a state dict of one
    would load into a torch module that computes something else (or fail on its names)."""
    for name, m in model.named_modules():
        what = [opt for opt, on in (("peepholes=True", getattr(m, "peepholes", False)),
                                    ("linear_before_reset=False", not getattr(m, "linear_before_reset", True)),
                                    ("direction='reverse'", getattr(m, "direction", "forward") == "reverse")) if on]
        if what:
            raise ValueError(f"{where}: model{'.' + name if name else ''} has {', '.join(what)}, which torch.nn has "
                             "not; export it with rnnfast.onnx.export or rnnfast.export instead")


def load_torch_state_dict(model, state_dict, strict: bool = True):
    """Load a PyTorch state dict into an rnnfast model.

    Every key and shape is checked before anything changes.

    Parameters
    ----------
    model : rnnfast.nn.Module
    state_dict : dict of str to torch.Tensor or ndarray
        Tensors on any device (converted to float32 numpy arrays).
    strict : bool, default True
        Missing or unexpected keys raise; with False they are returned.

    Returns
    -------
    (missing_keys, unexpected_keys) : (list of str, list of str)
    """
    if not isinstance(model, rnn.Module):
        raise TypeError(f"load_torch_state_dict: model: expected an rnnfast.nn.Module, got {type(model).__name__}")
    return model.load_state_dict(_numpy_state(state_dict, "load_torch_state_dict"), strict=strict)
