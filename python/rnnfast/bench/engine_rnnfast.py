"""The rnnfast side: the recurrent layers of rnnfast.nn, their streaming API, and the shared weights."""
from __future__ import annotations

import numpy as np

from .configs import VARIANT_CELLS, Spec, Unsupported, numpy_weights

LAYERS = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def make_model(cell: str, spec: Spec, bias: bool = True):
    import rnnfast.nn

    base, options = VARIANT_CELLS.get(cell, (cell, {}))
    return getattr(rnnfast.nn, LAYERS[base])(spec.input_size, spec.H, spec.layers, bias=bias,
                                              bidirectional=spec.bidirectional, **options)


def has_bias(weights) -> bool:
    return any(k.startswith("bias_") for k in weights)


def shared_weights(cell: str, spec: Spec, seed: int = 0):
    """The weights every engine runs with: a fresh rnnfast model's state_dict(); when the layer cannot be
    built (e.g. a build without it), PyTorch's init drawn with numpy under the same names (one layer)."""
    try:
        return make_model(cell, spec).state_dict(), "rnnfast"
    except Exception:  # noqa: BLE001 - any failure means the other engines still get comparable weights
        if spec.layers > 1 or spec.bidirectional:
            raise
        return numpy_weights(cell, spec.H, spec.input_size, seed=seed), "numpy"


def loaded_model(cell: str, spec: Spec, weights, training: bool):
    """The benchmarked layer with the shared weights, in train or eval mode."""
    model = make_model(cell, spec, has_bias(weights))
    model.load_state_dict(weights)
    return model.train(training)


def set_threads(n: int) -> None:
    import rnnfast

    rnnfast.set_num_threads(n)


class WithThreads:
    """A case run at a fixed rnnfast thread count, so that thread counts interleave like engines."""

    def __init__(self, case, threads: int):
        self.case, self.threads = case, threads

    def run(self):
        set_threads(self.threads)
        return self.case.run()

    def outputs(self):
        set_threads(self.threads)
        return self.case.outputs()


def _state_arrays(cell: str, state) -> dict:
    cell = VARIANT_CELLS.get(cell, (cell,))[0]
    """Final states (layers*directions, B, H), as PyTorch returns them."""
    if cell == "lstm":
        return dict(h_n=np.asarray(state[0]), c_n=np.asarray(state[1]))
    return dict(h_n=np.asarray(state))


class InferenceCase:
    engine = "rnnfast"

    def __init__(self, cell, spec: Spec, weights, data, threads):
        self.cell = cell
        self.model = loaded_model(cell, spec, weights, training=False)
        self.x = data["x"]

    def run(self):
        return self.model.forward(self.x)

    def outputs(self) -> dict:
        y, state = self.run()
        return dict(y=np.asarray(y), **_state_arrays(self.cell, state))


class StreamCase:
    engine = "rnnfast"

    def __init__(self, cell, spec: Spec, weights, data, threads):
        self.model = loaded_model(cell, spec, weights, training=False)
        self.stream = self.model.stream(batch_size=spec.B)
        self.xs = [np.ascontiguousarray(data["x"][t]) for t in range(spec.T)]
        self.out = np.empty((spec.B, spec.H), np.float32)  # step(x, out=) is the allocation-free path

    def run(self, collect: list | None = None):
        stream, out = self.stream, self.out
        stream.reset()
        step = stream.step
        for xt in self.xs:
            step(xt, out=out)
            if collect is not None:
                collect.append(out.copy())

    def outputs(self) -> dict:
        ys: list = []
        self.run(ys)
        return dict(y=np.stack(ys))


class TrainCase:
    """forward then backward(g): gradients of the input and (accumulated, so zeroed first) of every weight."""

    engine = "rnnfast"

    def __init__(self, cell, spec: Spec, weights, data, threads):
        self.model = loaded_model(cell, spec, weights, training=True)
        self.x, self.g = data["x"], data["g"]

    def run(self):
        self.model.zero_grad()
        y, _ = self.model.forward(self.x)
        return y, self.model.backward(self.g)

    def outputs(self) -> dict:
        y, grad_x = self.run()
        out = dict(y=np.asarray(y), grad_x=np.asarray(grad_x))
        out.update((f"grad:{n}", p.grad.copy()) for n, p in self.model.named_parameters())
        return out


def make_case(cell: str, spec: Spec, weights, data: dict, threads: int):
    if spec.kind == "stream" and VARIANT_CELLS.get(cell, ("", {}))[1].get("direction") == "reverse":
        raise Unsupported("a reverse layer has no stream (it starts at the end of the sequence)")
    set_threads(threads)
    cls = {"inference": InferenceCase, "stream": StreamCase, "train": TrainCase}[spec.kind]
    return cls(cell, spec, weights, data, threads)
