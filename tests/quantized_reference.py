"""A numpy model of the reduced-precision inference kernels: int8 (csrc/core/kernels/gemm_int8.h:
the same quantization in float32 arithmetic, integer products in int64) and bfloat16 on
vdpbf16ps (gemm_bf16.h: weights and activations rounded to bfloat16, products in float64);
the cells in float64."""
import numpy as np


def quantize_rows(a):
    """Per-row symmetric int8: q = rint(a * (127 / max|a|)) (float32, half to even), scale max/127."""
    a = np.asarray(a, np.float32)
    m = np.max(np.abs(a), axis=-1, keepdims=True)
    safe = np.where(m > 0, m, np.float32(1))
    inv = np.where(m > 0, np.float32(127) / safe, np.float32(0)).astype(np.float32)
    q = np.rint((a * inv).astype(np.float32)).astype(np.int64)
    return q, (m[..., 0] / np.float32(127)).astype(np.float32)


def _linear(a, wq, ws):
    q, s = quantize_rows(a)
    return (q @ wq.T).astype(np.float64) * s[:, None] * ws[None, :]


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _step(cell, gx, gh, h, c):
    if cell == "lstm":
        i, f, g, o = np.split(gx + gh, 4, axis=1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        return _sigmoid(o) * np.tanh(c), c
    if cell == "gru":
        (xr, xz, xn), (hr, hz, hn) = np.split(gx, 3, axis=1), np.split(gh, 3, axis=1)
        r, z = _sigmoid(xr + hr), _sigmoid(xz + hz)
        return (1 - z) * np.tanh(xn + r * hn) + z * h, c
    pre = gx + gh
    return (np.maximum(pre, 0) if cell == "rnn_relu" else np.tanh(pre)), c


def round_bf16(a):
    """Round-to-nearest-even float32 -> bfloat16 -> float32."""
    bits = np.ascontiguousarray(a, np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
    return bits.astype(np.uint32).view(np.float32)


def int8_forward(cell, x, w_ih, w_hh, b_ih, b_hh, h0=None, c0=None, lengths=None, reverse=False, forced=None):
    """y (T, B, H), h_n, c_n of one layer direction with int8 weights, rows independent (each
    row's activations have their own scale), past a row's length zeros.
    forced: the kernel's own y (T, B, H); then each step starts from the kernel's previous h, so
    both quantize the same float32 h (free running, float64 and float32 states may round one value
    of h differently now and then: a jump of one quantum)."""
    wiq, wis = quantize_rows(w_ih)
    whq, whs = quantize_rows(w_hh)
    lin_x = lambda a: _linear(a, wiq, wis)  # noqa: E731
    lin_h = lambda a: _linear(a, whq, whs)  # noqa: E731
    return _forward(cell, x, lin_x, lin_h, w_hh.shape, b_ih, b_hh, h0, c0, lengths, reverse, forced)


def bf16_dot_forward(cell, x, w_ih, w_hh, b_ih, b_hh, h0=None, c0=None, lengths=None, reverse=False, forced=None):
    """The same with bfloat16 weights and activations (the vdpbf16ps path)."""
    wi, wh = round_bf16(w_ih).astype(np.float64), round_bf16(w_hh).astype(np.float64)
    lin_x = lambda a: round_bf16(a).astype(np.float64) @ wi.T  # noqa: E731
    lin_h = lambda a: round_bf16(a).astype(np.float64) @ wh.T  # noqa: E731
    return _forward(cell, x, lin_x, lin_h, w_hh.shape, b_ih, b_hh, h0, c0, lengths, reverse, forced)


def _forward(cell, x, lin_x, lin_h, w_hh_shape, b_ih, b_hh, h0, c0, lengths, reverse, forced):
    T, B, _ = x.shape
    GH, H = w_hh_shape
    b_ih = np.zeros(GH) if b_ih is None else b_ih.astype(np.float64)
    b_hh = np.zeros(GH) if b_hh is None else b_hh.astype(np.float64)
    y = np.zeros((T, B, H))
    hn, cn = np.zeros((B, H)), np.zeros((B, H))
    for b in range(B):
        n = T if lengths is None else int(lengths[b])
        h = np.zeros((1, H)) if h0 is None else h0[b:b + 1].astype(np.float64)
        c = np.zeros((1, H)) if c0 is None else c0[b:b + 1].astype(np.float64)
        for t in (range(n - 1, -1, -1) if reverse else range(n)):
            gx = lin_x(x[t, b:b + 1]) + b_ih
            gh = lin_h(h) + b_hh
            h, c = _step(cell, gx, gh, h, c)
            y[t, b] = h[0]
            if forced is not None:
                h = forced[t, b:b + 1].astype(np.float64)
        hn[b], cn[b] = y[t, b], c[0]
    return y, hn, cn
