"""RNN, LSTM and GRU layers (stacked, bidirectional, ragged batches) on the C++ sequence kernels.

One kernel call per layer and direction covers the whole sequence; Python only loops over
layers. Parameter names, shapes, gate order and initialisation follow ``torch.nn.RNN/LSTM/GRU``.
"""
from __future__ import annotations

import math
import threading

import numpy as np

from .. import _core
from ._checks import MAX_HIDDEN, MAX_SIZE, as_float_array, as_lengths, check_int, check_weights, private_copy
from .module import DropoutRng, Module, Parameter, accumulating

_GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
# The layer-normalised LSTM's parameters per layer and direction (name stem, size in H, initial
# value), in the order the kernels take them concatenated: LN of x W_ihᵀ, of h W_hhᵀ, of c.
_LN_NAMES = (("ln_ih_weight", 4, 1.0), ("ln_ih_bias", 4, 0.0), ("ln_hh_weight", 4, 1.0), ("ln_hh_bias", 4, 0.0),
             ("ln_c_weight", 1, 1.0), ("ln_c_bias", 1, 0.0))


class _PackCache:
    """Packed weights of one layer direction, rebuilt when a parameter or the ISA changes."""

    def __init__(self):
        self._lock = threading.Lock()
        self._key = None
        self._packed = None

    def get(self, cell, params, with_backward, weights="float32", step=False, peephole=None,
            linear_before_reset=True, w_hr=None, ln=()):
        """step: also pack for one-step forwards (streams, cells; see _core.PackedWeights).
        peephole: an LSTM's (3, H) peephole Parameter, or None; linear_before_reset=False: Cho's GRU;
        w_hr: the LSTM projection's Parameter (proj_size), or None; ln: the layer-normalised
        LSTM's six Parameters (gains and biases, _LN_NAMES order), or ()."""
        key = (_core.get_isa(), _core.get_dot_products(), with_backward, weights, step, linear_before_reset) + \
            tuple((id(p.data), p.version) for p in (*params, peephole, w_hr, *ln) if p is not None)
        with self._lock:
            if self._key != key:
                self._packed = pack_weights(cell, params, with_backward, weights, step, peephole,
                                            linear_before_reset, w_hr, ln)
                self._key = key
            return self._packed


def pack_weights(cell, params, with_backward, weights="float32", step=False, peephole=None, linear_before_reset=True,
                 w_hr=None, ln=()):
    """A _core.PackedWeights of (w_ih, w_hh, b_ih, b_hh) Parameters (biases may be None), with an LSTM's
    projection w_hr and layer norm's six Parameters ln when given."""
    w_ih, w_hh, b_ih, b_hh = (None if p is None else p.data for p in params)
    return _core.PackedWeights(cell, w_ih, w_hh, b_ih, b_hh, with_backward, weights, step,
                               None if peephole is None else peephole.data, linear_before_reset,
                               None if w_hr is None else w_hr.data, np.concatenate([p.data for p in ln]) if ln else None)


_DIRECTIONS = ("forward", "reverse", "bidirectional")


def check_direction(direction, bidirectional):
    """The layer's direction from the two arguments that can give it; a clear error on conflicts."""
    if direction is None:
        return "bidirectional" if bidirectional else "forward"
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction: expected 'forward', 'reverse' or 'bidirectional', got {direction!r}")
    if bidirectional and direction != "bidirectional":
        raise ValueError(f"direction: {direction!r} conflicts with bidirectional=True (give one of them)")
    return direction


class RNNBase(DropoutRng, Module):
    """Shared machinery of RNN, LSTM and GRU; use those classes."""

    residual = False  # the default of modules pickled before residual stacks existed

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, seed=None,
                 direction=None, peepholes: bool = False, linear_before_reset: bool = True,
                 residual: bool = False, proj_size: int = 0, layer_norm: bool = False):
        super().__init__()
        self.input_size = check_int(input_size, "input_size", maximum=MAX_SIZE)
        self.hidden_size = check_int(hidden_size, "hidden_size", maximum=MAX_HIDDEN)
        self.num_layers = check_int(num_layers, "num_layers")
        self.proj_size = check_int(proj_size, "proj_size", 0)
        if self.proj_size and cell != "lstm":
            raise ValueError(f"proj_size: only an LSTM has a projection, got proj_size={proj_size} for {cell!r}")
        if self.proj_size >= hidden_size:
            raise ValueError(f"proj_size: expected 0 <= proj_size < hidden_size ({hidden_size}), got {proj_size}")
        if not isinstance(layer_norm, (bool, np.bool_)):
            raise TypeError(f"layer_norm: expected True or False, got {type(layer_norm).__name__}")
        self.layer_norm = bool(layer_norm)
        if self.layer_norm and (cell != "lstm" or self.proj_size):
            raise ValueError(f"layer_norm: only an LSTM without proj_size has layer norm, got {cell!r} with "
                             f"proj_size={self.proj_size}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1], got {dropout!r}")
        self.cell = cell
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.direction = check_direction(direction, bool(bidirectional))
        self.bidirectional = self.direction == "bidirectional"
        self.num_directions = 2 if self.bidirectional else 1
        self.peepholes = bool(peepholes)
        if self.peepholes and (self.proj_size or self.layer_norm):
            raise ValueError("peepholes: not with proj_size or layer_norm (that combination is not built)")
        self.linear_before_reset = bool(linear_before_reset)
        self.residual = check_residual(residual, self.num_layers)
        rng = np.random.default_rng(seed)
        self._dropout_rng = np.random.default_rng(rng.integers(2**63))
        gates = _GATES[cell] * hidden_size
        bound = 1.0 / math.sqrt(hidden_size)
        P = self._state_size
        self._layer_params = []  # [layer][direction] -> (w_ih, w_hh, b_ih, b_hh)
        self._peep_params = []  # [layer][direction] -> weight_p (peephole LSTM) or None
        self._proj_params = []   # [layer][direction] -> weight_hr (proj_size, H), or None
        self._ln_params = []     # [layer][direction] -> the six layer-norm Parameters, or ()
        for k in range(self.num_layers):
            layer_in = input_size if k == 0 else P * self.num_directions
            per_dir, peeps, proj, lns = [], [], [], []
            for d in range(self.num_directions):
                sfx = f"_l{k}" + ("_reverse" if self._runs_reverse(d) else "")
                shapes = [(f"weight_ih{sfx}", (gates, layer_in)), (f"weight_hh{sfx}", (gates, P))]
                if self.bias:
                    shapes += [(f"bias_ih{sfx}", (gates,)), (f"bias_hh{sfx}", (gates,))]
                if self.proj_size:  # torch's order: after the biases
                    shapes += [(f"weight_hr{sfx}", (self.proj_size, hidden_size))]
                for name, shape in shapes:
                    setattr(self, name, Parameter(rng.uniform(-bound, bound, shape)))
                params = [getattr(self, name) for name, _ in shapes if not name.startswith("weight_hr")]
                per_dir.append(tuple(params + [None] * (4 - len(params))))
                if self.peepholes:  # p_i, p_f, p_o (ONNX's P is p_i, p_o, p_f)
                    setattr(self, f"weight_p{sfx}", Parameter(rng.uniform(-bound, bound, (3, hidden_size))))
                peeps.append(getattr(self, f"weight_p{sfx}") if self.peepholes else None)
                proj.append(getattr(self, f"weight_hr{sfx}") if self.proj_size else None)
                ln = []
                for stem, n, value in _LN_NAMES if self.layer_norm else ():
                    setattr(self, f"{stem}{sfx}", Parameter(np.full(n * hidden_size, value, np.float32)))
                    ln.append(getattr(self, f"{stem}{sfx}"))
                lns.append(tuple(ln))
            self._layer_params.append(per_dir)
            self._peep_params.append(peeps)
            self._proj_params.append(proj)
            self._ln_params.append(lns)
        self._rebuild()
        self.grad_hx = None
        self.inference_weights = "float32"

    _transient = ("_pack_caches", "_free_caches")

    def _rebuild(self) -> None:
        # Models pickled before the cell variants and direction= existed: the default cells.
        self.__dict__.setdefault("direction", "bidirectional" if self.bidirectional else "forward")
        self.__dict__.setdefault("peepholes", False)
        self.__dict__.setdefault("linear_before_reset", True)
        self.__dict__.setdefault("_peep_params", [[None] * self.num_directions for _ in range(self.num_layers)])
        self._pack_caches = [[_PackCache() for _ in range(self.num_directions)] for _ in range(self.num_layers)]
        # Activation buffers of finished backwards, reused by the next training forward so their
        # memory stays mapped (page faults were ~4% of a step). Each pending forward owns its own.
        self._free_caches = []

    def _take_caches(self):
        try:
            return self._free_caches.pop()  # list.pop is atomic: threads never share a set
        except IndexError:
            return [[_core.TrainCache() for _ in range(self.num_directions)] for _ in range(self.num_layers)]

    def _give_back(self, caches) -> None:
        if len(self._free_caches) < 2:
            self._free_caches.append(caches)

    def set_inference_weights(self, weights: str) -> "RNNBase":
        """Weight format of eval-mode forwards (and the default of :meth:`stream`): 'float32'
        (default, PyTorch parity), 'bfloat16' (half the bytes read per step, ~1e-3 relative
        difference) or 'int8' (a quarter: symmetric per-output-channel weights, x and h quantized
        per row and step, u8 x s8 products summed exactly in int32; ~1e-2 relative difference).
        Where the CPU has them the products run on VNNI (int8) and AVX512_BF16 (bfloat16) dot
        products; ``rnnfast.cpu_info()['weight_kernels']`` says which. Training always uses float32."""
        weights = check_weights(weights)
        if weights != "float32" and (self.proj_size or getattr(self, "layer_norm", False)):
            raise ValueError(f"weights: {weights!r} is not supported with proj_size > 0 or layer_norm (use 'float32')")
        self.inference_weights = weights
        return self

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.cell == "rnn_relu":
            s += ", nonlinearity='relu'"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.direction == "reverse":
            s += ", direction='reverse'"
        if self.peepholes:
            s += ", peepholes=True"
        if not self.linear_before_reset:
            s += ", linear_before_reset=False"
        if self.residual:
            s += ", residual=True"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if getattr(self, "layer_norm", False):
            s += ", layer_norm=True"
        return s

    def stream(self, batch_size: int = 1, weights: str | None = None):
        """A :class:`Stream` for step-by-step inference with this model's current weights, in the
        format of ``weights`` (None: the module's, :meth:`set_inference_weights`)."""
        from .stream import Stream
        return Stream(self, batch_size, self.inference_weights if weights is None else weights)


    # helpers -------------------------------------------------------------------------
    def _runs_reverse(self, d: int) -> bool:
        """Whether direction d of each layer runs backwards in time."""
        return d == 1 or self.direction == "reverse"

    def _packed(self, k: int, d: int, with_backward: bool, weights: str = "float32", step: bool = False):
        """Layer k, direction d's weights packed (cached until a parameter changes)."""
        return self._pack_caches[k][d].get(self.cell, self._layer_params[k][d], with_backward, weights, step,
                                           self._peep_params[k][d], self.linear_before_reset,
                                           self._proj_params[k][d], self._ln_params[k][d])

    def _grads(self, k: int, d: int):
        """The gradient arrays layer_backward adds into, the peephole's or the projection's last when
        there is one."""
        params = self._layer_params[k][d] + ((self._peep_params[k][d],) if self.peepholes else ()) + \
            ((self._proj_params[k][d],) if self.proj_size else ())
        return tuple(None if p is None else p.grad for p in params)

    def _params_of(self, k: int):
        return [p for d in range(self.num_directions)
                for p in (*self._layer_params[k][d], self._peep_params[k][d], self._proj_params[k][d],
                          *self._ln_params[k][d])]

    @property
    def _is_lstm(self) -> bool:
        return self.cell == "lstm"

    @property
    def _state_size(self) -> int:
        """Columns of h and of each direction's output: proj_size, or hidden_size."""
        return getattr(self, "proj_size", 0) or self.hidden_size

    def _state_shape(self, batch: int | None, size: int | None = None):
        n, size = self.num_layers * self.num_directions, size or self._state_size
        return (n, size) if batch is None else (n, batch, size)

    def _parse_state(self, hx, batch):
        """Initial states as (L*D, B, P) (h) and (L*D, B, H) (c) float32 arrays (or None)."""
        if hx is None:
            return None, None
        shape = self._state_shape(batch)
        if self._is_lstm:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError("hx: expected a tuple (h_0, c_0) for an LSTM, got " + type(hx).__name__)
            h0 = as_float_array(hx[0], "hx[0]", shape=shape)
            c0 = as_float_array(hx[1], "hx[1]", shape=self._state_shape(batch, self.hidden_size))
        else:
            if isinstance(hx, (tuple, list)):
                raise TypeError(f"hx: expected an array of shape {shape}, got a {type(hx).__name__}")
            h0, c0 = as_float_array(hx, "hx", shape=shape), None
        if batch is None:  # unbatched input: add the batch axis
            h0 = h0[:, None, :]
            c0 = None if c0 is None else c0[:, None, :]
        return np.ascontiguousarray(h0), (None if c0 is None else np.ascontiguousarray(c0))

    def _to_time_major(self, x, name):
        """(T, B, F) view or copy of an input in the user's layout, and whether it was unbatched."""
        x = as_float_array(x, name)
        if x.ndim == 2:
            return np.ascontiguousarray(x[:, None, :]), True
        if x.ndim != 3:
            layout = "(B, T, F)" if self.batch_first else "(T, B, F)"
            raise ValueError(f"{name}: expected a 3-D array {layout} or a 2-D unbatched (T, F), got shape {x.shape}")
        return np.ascontiguousarray(x.transpose(1, 0, 2) if self.batch_first else x), False

    def _from_time_major(self, y, unbatched):
        if unbatched:
            return y[:, 0, :]
        return np.ascontiguousarray(y.transpose(1, 0, 2)) if self.batch_first else y

    # forward / backward ----------------------------------------------------------------
    def forward(self, x, hx=None, lengths=None):
        """Run the whole sequence.

        Parameters
        ----------
        x : float array (T, B, input_size), (B, T, input_size) with ``batch_first``, or (T, input_size)
            unbatched. Other float dtypes and non-contiguous arrays are converted.
        hx : initial state (num_layers * num_directions, B, hidden_size) (an LSTM takes ``(h_0, c_0)``;
            with ``proj_size`` h_0 has proj_size columns), zeros when None.
        lengths : int array (B,), each in [1, T]: packed-sequence semantics without sorting.

        Returns
        -------
        ``(output, h_n)`` or, for an LSTM, ``(output, (h_n, c_n))``; output is (T, B, D * hidden_size)
        (D * proj_size with a projection) in the input's layout.
        """
        return super().forward(x, hx, lengths)

    def _forward(self, x, hx=None, lengths=None):
        xt, unbatched = self._to_time_major(x, "x")
        T, B, I = xt.shape
        if T == 0 or B == 0:
            raise ValueError(f"x: expected a non-empty sequence and batch, got shape {np.shape(x)}")
        if I != self.input_size:
            raise ValueError(f"x: expected {self.input_size} input features, got {I}")
        lens = None if lengths is None else as_lengths(lengths, B, T)
        h0, c0 = self._parse_state(hx, None if unbatched else B)
        saving = self.saving()  # training mode draws dropout masks even under no_grad; saving keeps state
        if saving:
            xt = private_copy(xt, x)
        train_caches = self._take_caches() if saving else None
        D, H, P = self.num_directions, self.hidden_size, self._state_size
        hn = np.empty((self.num_layers * D, B, P), np.float32)
        cn = np.empty((self.num_layers * D, B, H), np.float32) if self._is_lstm else None
        saved = []
        layer_in = xt
        for k in range(self.num_layers):
            mask = None
            if k > 0 and self.training and self.dropout > 0.0:
                mask = (self._dropout_rng.random(layer_in.shape, dtype=np.float32) >= self.dropout)
                mask = mask.astype(np.float32) * np.float32(1.0 / (1.0 - self.dropout)) if self.dropout < 1.0 \
                    else np.zeros(layer_in.shape, np.float32)
                layer_in = layer_in * mask
            y = np.empty((T, B, D * P), np.float32)
            caches = [(self._packed(k, d, saving, "float32" if self.training else self.inference_weights),
                       train_caches[k][d] if saving else None) for d in range(D)]
            rows = slice(k * D, (k + 1) * D)  # this layer's entries of h0, c0, hn, cn
            if D == 2:  # both directions at once, each on half of the threads
                (p0, cache0), (p1, cache1) = caches
                _core.layer_forward_pair(p0, p1, layer_in, lens, None if h0 is None else h0[rows],
                                         None if c0 is None else c0[rows], y, hn[rows],
                                         None if cn is None else cn[rows], cache0, cache1)
            else:
                packed, cache = caches[0]
                _core.layer_forward(packed, layer_in, lens, self.direction == "reverse", None if h0 is None else h0[k],
                                    None if c0 is None else c0[k], y, 0, hn[k], None if cn is None else cn[k], cache)
            if self.residual and k > 0:
                y += layer_in  # the skip: this layer's input (as it saw it, after dropout) joins its output
            saved.append((layer_in, mask, caches))
            layer_in = y
        out = self._from_time_major(layer_in, unbatched)
        if unbatched:
            hn = hn[:, 0, :]
            cn = None if cn is None else cn[:, 0, :]
        result = (out, (hn, cn)) if self._is_lstm else (out, hn)
        return result, ((saved, T, B, unbatched, train_caches) if saving else None)

    def backward(self, grad_output, grad_state=None):
        """Gradient of the input of this thread's newest pending forward.

        Accumulates every parameter's ``.grad`` and sets ``grad_hx`` (the initial state's
        gradient; also on the context with ``backward_ctx``). ``grad_output`` has the output's
        shape; ``grad_state`` is the gradient of h_n (an LSTM takes ``(grad_h_n, grad_c_n)``,
        either may be None).
        """
        return super().backward(grad_output, grad_state)

    def _backward(self, ctx, grad_output, grad_state=None):
        saved, T, B, unbatched, train_caches = ctx.saved
        D, H, P = self.num_directions, self.hidden_size, self._state_size
        out_shape = (T, D * P) if unbatched else ((B, T, D * P) if self.batch_first else (T, B, D * P))
        g = as_float_array(grad_output, "grad_output", shape=out_shape)
        dy, _ = self._to_time_major(g, "grad_output")
        dhn, dcn = self._parse_grad_state(grad_state, None if unbatched else B)
        dh0 = np.empty((self.num_layers * D, B, P), np.float32)
        dc0 = np.empty((self.num_layers * D, B, H), np.float32) if self._is_lstm else None
        for k in reversed(range(self.num_layers)):
            layer_in, mask, caches = saved[k]
            dx = np.empty(layer_in.shape, np.float32)
            grads = [self._grads(k, d) for d in range(D)]
            ln = self._ln_params[k]
            if self.layer_norm:  # one (18H) gradient per direction, split into the six Parameters after
                grads = [g + (np.zeros(18 * H, np.float32),) for g in grads]
            with accumulating(*self._params_of(k)):
                self._layer_backward(caches, layer_in, dy, dhn, dcn, dx, dh0, dc0, grads, k)
                for d in range(D * self.layer_norm):
                    offsets = np.cumsum([0] + [p.size for p in ln[d]])
                    for p, lo, hi in zip(ln[d], offsets[:-1], offsets[1:]):
                        p.grad += grads[d][-1][lo:hi]
            if self.residual and k > 0:
                dx += dy  # the skip passes the output gradient straight to the input
            if mask is not None:
                dx *= mask
            dy = dx
        self._give_back(train_caches)
        if unbatched:
            dh0 = dh0[:, 0, :]
            dc0 = None if dc0 is None else dc0[:, 0, :]
        ctx.grad_hx = self.grad_hx = (dh0, dc0) if self._is_lstm else dh0
        return self._from_time_major(dy, unbatched)

    def _layer_backward(self, caches, layer_in, dy, dhn, dcn, dx, dh0, dc0, grads, k):
        """One layer's kernels: writes dx, dh0/dc0 rows of layer k, adds into grads."""
        D = self.num_directions
        rows = slice(k * D, (k + 1) * D)
        if D == 2:
            (p0, cache0), (p1, cache1) = caches
            _core.layer_backward_pair(p0, p1, cache0, cache1, layer_in, dy, None if dhn is None else dhn[rows],
                                      None if dcn is None else dcn[rows], dx, dh0[rows],
                                      None if dc0 is None else dc0[rows], grads[0], grads[1])
        else:
            (packed, cache), = caches
            name = "grad_w_p" if self.peepholes else "grad_layer_norm" if self.layer_norm else "grad_w_hr"
            extra = {name: grads[0][4]} if len(grads[0]) > 4 else {}
            _core.layer_backward(packed, cache, layer_in, dy, 0, None if dhn is None else dhn[k],
                                 None if dcn is None else dcn[k], dx, False, dh0[k],
                                 None if dc0 is None else dc0[k], *grads[0][:4], **extra)

    def _parse_grad_state(self, grad_state, batch):
        if grad_state is None:
            return None, None
        shapes = (self._state_shape(batch), self._state_shape(batch, self.hidden_size))
        if self._is_lstm:
            if not isinstance(grad_state, (tuple, list)) or len(grad_state) != 2:
                raise TypeError("grad_state: expected a tuple (grad_h_n, grad_c_n) for an LSTM")
            gh, gc = (None if g is None else as_float_array(g, f"grad_state[{i}]", shape=shapes[i])
                      for i, g in enumerate(grad_state))
        else:
            gh, gc = as_float_array(grad_state, "grad_state", shape=shapes[0]), None
        if batch is None:
            gh = None if gh is None else gh[:, None, :]
            gc = None if gc is None else gc[:, None, :]
        return (None if gh is None else np.ascontiguousarray(gh)), (None if gc is None else np.ascontiguousarray(gc))


_DOC = """{summary}

    Parameters
    ----------
    input_size : int
        Features per step of the input (I).
    hidden_size : int
        Features of the hidden state (H).
    num_layers : int, default 1
        Stacked layers; layer k > 0 reads layer k-1's output.
{extra}    bias : bool, default True
        Whether the layers have ``bias_ih`` and ``bias_hh``.
    batch_first : bool, default False
        Input and output are (B, T, F) instead of (T, B, F); states stay (L*D, B, H).
    dropout : float, default 0.0
        Dropout on the outputs of every layer but the last, in training mode.
    bidirectional : bool, default False
        Each layer also runs backwards in time; outputs concatenate both directions (2H).
    seed : int, numpy Generator or None, keyword-only
        Seeds the initialisation (uniform in +-1/sqrt(H), as PyTorch) and the dropout masks.
    direction : {{'forward', 'reverse', 'bidirectional'}} or None, keyword-only
        None follows ``bidirectional``. 'reverse' runs every layer backwards in time only (ONNX's
        direction="reverse"; with ``lengths`` each sample starts at its last valid step); its
        parameters carry the ``_reverse`` suffix, and it has no ``stream()`` (it needs the future).
        ``bidirectional=True`` with 'forward' or 'reverse' is an error.
    residual : bool, default False, keyword-only
        Every layer after the first adds its input to its output (a residual stack, as in Wu et
        al. 2016): layer k > 0 outputs y_k + x_k, x_k being its input after dropout. That input is
        the layer below's D*H output, so the sizes always match. Needs ``num_layers`` >= 2. Not a
        torch option: ``rnnfast.torch`` and ``to_torch_state_dict`` refuse it.
{variant}
    Attributes
    ----------
    weight_ih_l{{k}}[_reverse] : Parameter (G*H, I or D*H)
    weight_hh_l{{k}}[_reverse] : Parameter (G*H, H)
    bias_ih_l{{k}}[_reverse], bias_hh_l{{k}}[_reverse] : Parameter (G*H,)
        PyTorch's names, shapes and gate order ({gates}); ``state_dict()`` moves both ways.
    grad_hx : the initial state's gradient after ``backward``.

    Notes
    -----
    ``forward(x, hx=None, lengths=None)`` runs the whole sequence in one C++ call per layer and
    direction; ``backward(grad_output, grad_state=None)`` returns the input gradient and adds into
    every ``Parameter.grad`` (see ``rnnfast.nn.module`` for how forwards and backwards pair, also
    across threads). ``stream()`` steps one token at a time; ``eval()`` keeps no activations.

    Examples
    --------
    >>> import numpy as np, rnnfast
    >>> m = rnnfast.nn.{name}(8, 16, num_layers=2, batch_first=True)
    >>> y, {ret} = m(np.zeros((4, 10, 8), np.float32))
    >>> y.shape
    (4, 10, 16)
    """


def check_residual(residual, num_layers: int) -> bool:
    """residual=True needs a layer after the first (the first one's input has other features)."""
    if not isinstance(residual, (bool, np.bool_)):
        raise TypeError(f"residual: expected a bool, got {type(residual).__name__}")
    if residual and num_layers < 2:
        raise ValueError(f"residual: a residual stack adds each layer's input to its output from the second layer "
                         f"on; expected num_layers >= 2, got {num_layers}")
    return bool(residual)


def _doc(name: str, summary: str, gates: str, ret: str = "h_n", extra: str = "", variant: str = "") -> str:
    """The numpydoc text the three layers share (their constructors take the same arguments)."""
    return _DOC.format(name=name, summary=summary, gates=gates, ret=ret, extra=extra, variant=variant)


_PEEPHOLES = """    peepholes : bool, default False, keyword-only
        Diagonal peepholes (Gers & Schmidhuber 2000, ONNX's input P): i and f also see c_{t-1},
        o sees c_t. Adds ``weight_p_l{k}[_reverse]`` of shape (3, H), rows p_i, p_f, p_o (ONNX's P
        orders them p_i, p_o, p_f). Not in PyTorch: ``rnnfast.torch`` and ``from_torch`` refuse it.
"""
_RESET = """    linear_before_reset : bool, default True, keyword-only
        True: PyTorch's and cuDNN's GRU, n = tanh(W_in x + b_in + r * (W_hn h + b_hn)). False: Cho
        et al. 2014's original (ONNX's default linear_before_reset=0, Keras reset_after=False),
        n = tanh(W_in x + b_in + W_hn (r * h) + b_hn); same parameters, one more phase per step.
"""


class RNN(RNNBase):

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, *, seed=None, direction=None, residual=False):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__("rnn_" + nonlinearity, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, seed, direction, residual=residual)
        self.nonlinearity = nonlinearity


class LSTM(RNNBase):

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, *, seed=None, direction=None, peepholes=False, residual=False,
                 layer_norm=False):
        super().__init__("lstm", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         seed, direction, peepholes=peepholes, residual=residual, proj_size=proj_size,
                         layer_norm=layer_norm)


class GRU(RNNBase):

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, *, seed=None, direction=None, linear_before_reset=True, residual=False):
        super().__init__("gru", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         seed, direction, linear_before_reset=linear_before_reset, residual=residual)


RNN.__doc__ = _doc("RNN", "Elman RNN, as ``torch.nn.RNN``: h' = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh).", "G = 1",
                   extra="    nonlinearity : {'tanh', 'relu'}, default 'tanh'\n        The activation ``act``.\n")
LSTM.__doc__ = _doc("LSTM", "Long short-term memory, as ``torch.nn.LSTM``: returns ``(output, (h_n, c_n))``.",
                    "G = 4: input, forget, cell, output", ret="(h_n, c_n)", variant=_PEEPHOLES,
                    extra="    proj_size : int, default 0\n        Projected LSTM, as torch: h = W_hr (o * tanh(c)) with "
                          "``weight_hr_l{k}[_reverse]`` (proj_size, H);\n        h, h_0, h_n and each direction's "
                          "output then have proj_size columns, W_hh is (G*H, proj_size).\n"
                          "    layer_norm : bool, default False, keyword-only\n        Layer-normalised LSTM (Ba, Kiros "
                          "& Hinton 2016): a = LN(x W_ihᵀ) + b_ih + LN(h W_hhᵀ) + b_hh\n        (each LN over the 4H "
                          "gates) and h' = o * tanh(LN(c')), with gains ``ln_ih_weight_l{k}``,\n        "
                          "``ln_hh_weight_l{k}`` (4H), ``ln_c_weight_l{k}`` (H), ones, and biases ``ln_*_bias_l{k}``, "
                          "zeros.\n        Not with proj_size; the export formats refuse it.\n")
GRU.__doc__ = _doc("GRU", "Gated recurrent unit, as ``torch.nn.GRU``: the reset gate multiplies the recurrent\n"
                   "    product (W_hn h + b_hn), the form PyTorch and cuDNN use (``linear_before_reset=False``: Cho et\n"
                   "    al.'s original).", "G = 3: reset, update, new", variant=_RESET)
