"""Module and Parameter: the explicit forward/backward building blocks (DESIGN.md §4).

There is no autograd tape. A module caches in ``forward`` what its ``backward`` needs;
``backward(grad_out)`` returns the gradient of the input and accumulates (+=) into each
parameter's ``.grad``.
"""
from __future__ import annotations

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

    __slots__ = ("_data", "grad", "version", "requires_grad")

    def __init__(self, data, requires_grad: bool = True):
        self._data = _as_float32(data, "data")
        self.grad = np.zeros_like(self._data)
        self.version = 0
        self.requires_grad = bool(requires_grad)  # False: frozen, optimizers leave it alone

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


class Module:
    """Base class: registers parameters and child modules assigned as attributes."""

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

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
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, grad_output):
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

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
