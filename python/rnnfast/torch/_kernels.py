"""The kernel calls behind the drop-in modules: packed weights from torch tensors (zero copy),
one layer stack forward and its backward, on numpy views of contiguous float32 CPU tensors."""
from __future__ import annotations

import functools

import numpy as np
import torch

from .. import _core

_CELLS = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu"}


def torch_threads(kernel_call):
    """Runs kernel_call with this thread's kernel calls capped at torch.get_num_threads() threads,
    as torch.nn's modules use (and at most rnnfast.get_num_threads()): a process that sets
    torch.set_num_threads(1), e.g. one of several serving or data-loading processes, gets one."""
    @functools.wraps(kernel_call)
    def capped(*args, **kwargs):
        previous = _core._set_thread_cap(torch.get_num_threads())
        try:
            return kernel_call(*args, **kwargs)
        finally:
            _core._set_thread_cap(previous)
    return capped


def zeros_like(t: torch.Tensor) -> torch.Tensor:
    """Zeros from numpy (calloc'ed pages): torch.zeros would wake torch's thread pool, whose
    spinning workers then slow the kernel that starts next (measured: 2 threads, ~15%)."""
    return torch.from_numpy(np.zeros(tuple(t.shape), np.float32))


def array(t: torch.Tensor) -> np.ndarray:
    """The numpy view of a tensor (shares memory; the caller made it contiguous float32 CPU)."""
    return t.detach().numpy()


class State:
    """Per-module kernel state that is not part of the torch module: packed weights cached on
    the tensors' identity and version counters, and activation buffers reused across steps.
    Neither pickles; a copied module rebuilds them."""

    __slots__ = ("packs", "free")

    def __init__(self):
        self.packs = {}  # (layer, direction) -> (key, PackedWeights)
        self.free = []  # TrainCache sets of finished backwards

    def packed(self, slot, cell, weights, with_backward: bool, step: bool = False):
        """Packed weights of one layer direction. Training forwards repack when an optimizer
        (or any in-place edit through autograd) bumped a tensor's version; edits through
        ``.data`` are invisible to the version counter: call ``flatten_parameters()`` after them."""
        key = (_core.get_isa(), with_backward, step) + tuple(
            (id(w), w.data_ptr(), w._version) for w in weights if w is not None)
        hit = self.packs.get(slot)
        if hit is not None and hit[0] == key:
            return hit[1]
        w_ih, w_hh, b_ih, b_hh, w_hr = (None if w is None else array(w) for w in (*weights, None)[:5])
        packed = _core.PackedWeights(cell, w_ih, w_hh, b_ih, b_hh, with_backward, "float32", step, w_hr=w_hr)
        self.packs[slot] = (key, packed)
        return packed

    def take_caches(self, n: int):
        try:
            return self.free.pop()  # list.pop is atomic: two threads never share a set
        except IndexError:
            return [_core.TrainCache() for _ in range(n)]

    def give_back(self, caches) -> None:
        if len(self.free) < 2:
            self.free.append(caches)


class Spec:
    """What a layer stack's kernels need from the module: cell, sizes, weights per layer direction."""

    __slots__ = ("cell", "num_layers", "D", "H", "P", "proj", "per_dir", "dropout", "lstm")

    def __init__(self, module, dropout: float):
        self.cell = _CELLS[module.mode]
        self.lstm = self.cell == "lstm"
        self.num_layers = module.num_layers
        self.D = 2 if module.bidirectional else 1
        self.H = module.hidden_size
        self.proj = bool(getattr(module, "proj_size", 0))
        self.P = module.proj_size if self.proj else self.H  # columns of h and of each direction's output
        self.per_dir = (4 if module.bias else 2) + self.proj  # torch's flat weights: ..., weight_hr last
        self.dropout = dropout  # 0 unless training

    def weights(self, flat, k, d):
        """(w_ih, w_hh, b_ih, b_hh), and w_hr last with a projection."""
        n = self.per_dir
        w = list(flat[(k * self.D + d) * n:(k * self.D + d + 1) * n])
        w_hr = (w.pop(),) if self.proj else ()
        return (tuple(w) if len(w) == 4 else (w[0], w[1], None, None)) + w_hr


def draw_mask(shape, p: float, scatter=None) -> np.ndarray:
    """A dropout mask (keep / (1 - p)) from torch's generator, drawn exactly as torch.nn's RNNs
    draw theirs (one bernoulli_ over the layer output: (T, B, F), or the packed rows (N, F) that
    ``scatter`` places into (T, B, F)); torch.manual_seed makes it reproducible."""
    T, B, F = shape
    if p >= 1.0:
        return np.zeros(shape, np.float32)
    rows = (T, B, F) if scatter is None else (len(scatter), F)
    mask = array(torch.empty(rows).bernoulli_(1.0 - p).div_(1.0 - p))
    if scatter is None:
        return mask
    full = np.zeros((T * B, F), np.float32)
    full[scatter] = mask
    return full.reshape(shape)


@torch_threads
def stack_forward(spec: Spec, state: State, flat, x, lengths, h0, c0, saving: bool, scatter=None):
    """All layers over a time-major (T, B, I) float32 array. Returns y, hn, cn and (when saving)
    what stack_backward needs."""
    T, B, _ = x.shape
    D, H, P, L = spec.D, spec.H, spec.P, spec.num_layers
    hn = np.empty((L * D, B, P), np.float32)
    cn = np.empty((L * D, B, H), np.float32) if spec.lstm else None
    caches = state.take_caches(L * D) if saving else None
    saved = []
    layer_in = x
    for k in range(L):
        mask = None
        if k > 0 and spec.dropout > 0.0:
            mask = draw_mask(layer_in.shape, spec.dropout, scatter)
            layer_in = layer_in * mask
        y = np.empty((T, B, D * P), np.float32)
        packs = [state.packed((k, d), spec.cell, spec.weights(flat, k, d), saving) for d in range(D)]
        rows = slice(k * D, (k + 1) * D)
        h0k = None if h0 is None else h0[rows]
        c0k = None if c0 is None else c0[rows]
        cnk = None if cn is None else cn[rows]
        if D == 2:
            c = caches[2 * k:2 * k + 2] if saving else (None, None)
            _core.layer_forward_pair(packs[0], packs[1], layer_in, lengths, h0k, c0k, y, hn[rows], cnk, c[0], c[1])
        else:
            _core.layer_forward(packs[0], layer_in, lengths, False, None if h0k is None else h0k[0],
                                None if c0k is None else c0k[0], y, 0, hn[k], None if cnk is None else cnk[0],
                                caches[k] if saving else None)
        if saving:
            saved.append((layer_in, mask, packs))
        layer_in = y
    return layer_in, hn, cn, ((saved, caches) if saving else None)


@torch_threads
def stack_backward(spec: Spec, state: State, flat, saved, dy, dhn, dcn):
    """Gradients of the forward that saved ``saved``: dx, dh0, dc0 and one tensor per weight of
    ``flat`` (fresh zeros the kernels add into)."""
    layers, caches = saved
    D, H, P, L = spec.D, spec.H, spec.P, spec.num_layers
    B = dy.shape[1]
    dh0 = np.empty((L * D, B, P), np.float32)
    dc0 = np.empty((L * D, B, H), np.float32) if spec.lstm else None
    grads = [zeros_like(w) for w in flat]
    for k in reversed(range(L)):
        layer_in, mask, packs = layers[k]
        dx = np.empty(layer_in.shape, np.float32)
        g = [tuple(None if w is None else array(w) for w in spec.weights(grads, k, d)) for d in range(D)]
        rows = slice(k * D, (k + 1) * D)
        dhk = None if dhn is None else dhn[rows]
        dck = None if dcn is None else dcn[rows]
        if D == 2:
            _core.layer_backward_pair(packs[0], packs[1], caches[2 * k], caches[2 * k + 1], layer_in, dy, dhk, dck,
                                      dx, dh0[rows], None if dc0 is None else dc0[rows], g[0], g[1])
        else:
            _core.layer_backward(packs[0], caches[k], layer_in, dy, 0, None if dhk is None else dhk[0],
                                 None if dck is None else dck[0], dx, False, dh0[k],
                                 None if dc0 is None else dc0[k], *g[0])
        if mask is not None:
            dx *= mask
        dy = dx
    state.give_back(caches)
    return dy, dh0, dc0, grads
