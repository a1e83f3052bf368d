"""PyTorch peer: torch.nn.RNN/LSTM/GRU for sequences, the *Cell classes for streaming (imported lazily)."""
from __future__ import annotations

import numpy as np

from .configs import Spec, Unsupported, check_default_cell

MODULES = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def _import():
    import torch

    return torch


def version() -> str | None:
    try:
        return _import().__version__
    except ImportError:
        return None


def set_threads(n: int) -> None:
    _import().set_num_threads(n)


def make_module(cell: str, spec: Spec, weights):
    """A torch sequence module of spec's shape holding exactly ``weights`` (PyTorch names, numpy arrays)."""
    torch = _import()
    bias = any(k.startswith("bias_") for k in weights)
    module = getattr(torch.nn, MODULES[cell])(spec.input_size, spec.H, spec.layers, bias=bias,
                                              bidirectional=spec.bidirectional)
    module.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()})
    return module


def make_cell(cell: str, spec: Spec, weights):
    """The *Cell twin: the layer-0 weights without their '_l0' suffix."""
    torch = _import()
    if spec.layers > 1 or spec.bidirectional:
        raise Unsupported("torch's *Cell classes are one unidirectional layer")
    bias = any(k.startswith("bias_") for k in weights)
    module = getattr(torch.nn, MODULES[cell] + "Cell")(spec.input_size, spec.H, bias=bias)
    module.load_state_dict({k.replace("_l0", ""): torch.from_numpy(np.ascontiguousarray(v))
                            for k, v in weights.items()})
    return module


class InferenceCase:
    engine = "torch"

    def __init__(self, cell, spec: Spec, weights, data, threads):
        self.torch = _import()
        self.cell = cell
        self.module = make_module(cell, spec, weights).eval()
        self.x = self.torch.from_numpy(data["x"])

    def run(self):
        with self.torch.inference_mode():
            return self.module(self.x)

    def outputs(self) -> dict:
        y, state = self.run()
        if self.cell == "lstm":
            return dict(y=y.numpy(), h_n=state[0].numpy(), c_n=state[1].numpy())
        return dict(y=y.numpy(), h_n=state.numpy())


class StreamCase:
    engine = "torch"

    def __init__(self, cell, spec: Spec, weights, data, threads):
        torch = self.torch = _import()
        self.cell = cell
        self.module = make_cell(cell, spec, weights).eval()
        self.xs = list(torch.from_numpy(data["x"]).unbind(0))
        zeros = torch.zeros(spec.B, spec.H)
        self.h0 = (zeros, zeros.clone()) if cell == "lstm" else zeros

    def run(self, collect: list | None = None):
        with self.torch.inference_mode():
            h = self.h0
            for xt in self.xs:
                h = self.module(xt, h)
                if collect is not None:
                    collect.append((h[0] if self.cell == "lstm" else h).numpy().copy())

    def outputs(self) -> dict:
        ys: list = []
        self.run(ys)
        return dict(y=np.stack(ys))


class TrainCase:
    """Forward + backward of (y * g).sum(): gradients of the input and of every weight."""

    engine = "torch"

    def __init__(self, cell, spec: Spec, weights, data, threads):
        torch = self.torch = _import()
        self.module = make_module(cell, spec, weights).train()
        self.x = torch.from_numpy(data["x"].copy()).requires_grad_(True)
        self.g = torch.from_numpy(data["g"])

    def run(self):
        self.module.zero_grad(set_to_none=True)
        self.x.grad = None
        y, _ = self.module(self.x)
        (y * self.g).sum().backward()
        return y

    def outputs(self) -> dict:
        y = self.run()
        out = dict(y=y.detach().numpy(), grad_x=self.x.grad.numpy())
        out.update((f"grad:{n}", p.grad.numpy()) for n, p in self.module.named_parameters())
        return out


def make_case(cell: str, spec: Spec, weights, data: dict, threads: int):
    """Raises ImportError when torch is missing."""
    check_default_cell(cell, "PyTorch")
    set_threads(threads)
    cls = {"inference": InferenceCase, "stream": StreamCase, "train": TrainCase}[spec.kind]
    return cls(cell, spec, weights, data, threads)
