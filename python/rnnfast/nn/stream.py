"""Low-latency step-by-step inference (one token at a time) for a stacked RNN/LSTM/GRU."""
from __future__ import annotations

import numpy as np

from .. import _core
from ._checks import as_float_array, check_int, check_weights
from .recurrent import pack_weights


class Stream:
    """The recurrent state of one or more sequences plus the model's packed weights.

    ``step(x_t, out=None)`` advances every layer by one step and returns the top layer's
    output (B, H) (or (H,) for an unbatched (I,) input); pass ``out`` to reuse an array and
    allocate nothing. The weights are those of the model when the stream was made. Streams of
    one model may be used from different threads at once; one stream is not thread-safe.

    ``weights="bfloat16"`` keeps the input and recurrent weight matrices as bfloat16 (biases and
    the cell's arithmetic stay float32; ~3e-3 relative difference). Where the CPU has AVX512_BF16
    the products run on ``vdpbf16ps`` (activations rounded to bfloat16 too); elsewhere each weight
    is widened to float32, which pays off only when the weights do not fit in the cores' L2 caches
    (measured before the dot-product path, 2 threads, B=1: LSTM H=512 150 -> 79 us per step; GRU/RNN
    H=256 and LSTM H=128 ~15% slower). Speed of both paths: benchmarks/RESULTS.md.

    ``weights="int8"`` quantizes them to int8 (per output channel; x and h quantized per row and
    step; ~1e-2 relative difference), a quarter of the bytes, on VNNI dot products where the CPU
    has them. The default is the model's ``inference_weights``.

    A step runs every layer in one parallel region and copies no state; each layer's tile
    projects its own block of the input (weights packed for single steps), so a layer costs
    one wait between the threads. A residual model (``residual=True``) runs its layers one
    parallel region each, adding each layer's input to its output in between.
    """

    def __init__(self, model, batch_size: int = 1, weights: str = "float32"):
        if model.direction != "forward":
            raise ValueError(f"stream: a {model.direction} model needs the whole sequence (its future); "
                             "use forward() instead")
        self.batch_size = check_int(batch_size, "batch_size")
        self.weights = weights = check_weights(weights)
        if weights != "float32" and (getattr(model, "proj_size", 0) or getattr(model, "layer_norm", False)):
            raise ValueError(f"weights: {weights!r} is not supported with proj_size > 0 or layer_norm (use 'float32')")
        if weights == "float32":
            packed = [model._packed(k, 0, False, step=True) for k in range(model.num_layers)]
        else:  # a private narrowed copy: the model's own cache stays float32
            packed = [pack_weights(model.cell, model._layer_params[k][0], False, weights, True,
                                   model._peep_params[k][0], model.linear_before_reset)
                      for k in range(model.num_layers)]
        self._core = _core.Stream(packed, self.batch_size, model.residual)
        self._is_lstm = model.cell == "lstm"
        self._shape = (model.num_layers, self.batch_size, model._state_size)  # h: proj_size columns if any
        self._c_shape = (model.num_layers, self.batch_size, model.hidden_size)
        # Bound C++ methods: a step costs one call, no Python frame of ours.
        self.step = self._core.step
        self.reset = self._core.reset

    @property
    def state(self):
        """h of shape (num_layers, B, H) (proj_size columns with a projection), or (h, c) for an
        LSTM (c: (num_layers, B, H)) (copies)."""
        return self._core.get_state()

    @state.setter
    def state(self, value):
        if self._is_lstm:
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise TypeError("state: expected a tuple (h, c) for an LSTM")
            h = as_float_array(value[0], "state[0]", shape=self._shape)
            c = as_float_array(value[1], "state[1]", shape=self._c_shape)
            self._core.set_state(np.ascontiguousarray(h), np.ascontiguousarray(c))
        else:
            self._core.set_state(np.ascontiguousarray(as_float_array(value, "state", shape=self._shape)), None)
