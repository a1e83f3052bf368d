"""Bad-input fuzz suite (issue 11) over the public entry points: each case raises a clear error that
names the argument, or gives the numbers of an oracle (the scalar reference kernels or numpy).

Runs are reproducible (hypothesis derandomized); RNNFAST_FUZZ_EXAMPLES=<n> runs n cases per test
instead of the default few, and scripts/fuzz_report.py counts outcomes with each test in its own
process. Rules: tests/fuzz_harness.py.
"""
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import rnnfast
from rnnfast import _core, checkpoint, losses, optim, text
from rnnfast.data import sliding_windows, standardize
from fuzz_harness import ANY, FUZZ, INT_VARIANTS, REJECT, float_arrays, outcome, variants
from helpers import ISAS, using_isa

CELLS = [("RNN", "rnn_tanh", {}), ("RNN", "rnn_relu", {"nonlinearity": "relu"}), ("LSTM", "lstm", {}),
         ("GRU", "gru", {})]
N_VARIANTS = len(variants(np.zeros((2, 2, 2), np.float32)))
sizes = st.integers(1, 5)


def recurrent(kind, kwargs, I, H, seed=0):
    return getattr(rnnfast.nn, kind)(I, H, seed=seed, **kwargs)


def reference_layer(m, x, lengths=None, reverse=False):
    """(y, hn, cn) of a one-layer module's single direction from the scalar reference."""
    params = [m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0]
    T, B = x.shape[:2]
    lens = np.full(B, T, np.int32) if lengths is None else np.asarray(lengths, np.int32)
    return _core.reference_forward(m.cell, np.ascontiguousarray(x, np.float32), lens, reverse,
                                   *[p.data for p in params], None, None)


def recurrent_expected(m, values, lengths=None):
    """What m(x, lengths=...) must return for x with these values, or REJECT."""
    if values is None:
        return REJECT
    x = np.asarray(values, np.float32)
    unbatched = x.ndim == 2
    if unbatched:
        x = x[:, None, :]
    if x.ndim != 3 or x.shape[-1] != m.input_size or 0 in x.shape:
        return REJECT
    if lengths is not None and (unbatched or len(lengths) != x.shape[1] or min(lengths) < 1 or max(lengths) > x.shape[0]):
        return REJECT
    y, hn, cn = reference_layer(m, x, lengths)
    if unbatched:
        y, hn, cn = y[:, 0], hn[0], cn[0]
    state = (hn[None], cn[None]) if m.cell == "lstm" else hn[None]
    return y, state


LENGTHS = ["none", "valid", "list", "zero", "too_long", "float", "wrong_count", "two_d", "negative", "bool", "str"]


def lengths_variant(name, T, B, rng):
    """(value passed, the int lengths a function accepting it must use, or None for invalid)."""
    valid = rng.integers(1, T + 1, size=B)
    return {
        "none": (None, None), "valid": (valid, valid), "list": (valid.tolist(), valid),
        "zero": (np.zeros(B, np.int64), "bad"), "too_long": (np.full(B, T + 1), "bad"),
        "float": (valid.astype(np.float64) + 0.5, "bad"), "wrong_count": (np.ones(B + 1, np.int64), "bad"),
        "two_d": (valid[None], "bad"), "negative": (-valid, "bad"), "bool": (np.ones(B, bool), "bad"),
        "str": ("abc", "bad"),
    }[name]


@FUZZ
@given(cell=st.sampled_from(CELLS), T=sizes, B=sizes, I=sizes, H=st.integers(1, 20), train=st.booleans(),
       v=st.integers(0, N_VARIANTS - 1), lv=st.sampled_from(LENGTHS), seed=st.integers(0, 2**16))
def test_recurrent_forward(cell, T, B, I, H, train, v, lv, seed):
    kind, name, kwargs = cell
    rng = np.random.default_rng(seed)
    m = recurrent(kind, kwargs, I, H, seed).train(train)
    vname, x, values = variants(rng.standard_normal((T, B, I)).astype(np.float32))[v]
    lengths, lens_values = lengths_variant(lv, T, B, rng)
    want = (lambda: REJECT) if isinstance(lens_values, str) else (lambda: recurrent_expected(m, values, lens_values))
    if lens_values is None and lv != "none":
        want = lambda: REJECT  # noqa: E731
    outcome(f"{kind}.forward:x={vname}:lengths={lv}", lambda: m(x, lengths=lengths), ("x", "input", "lengths"), want)


@FUZZ
@given(cell=st.sampled_from(CELLS), T=sizes, B=sizes, I=sizes, H=st.integers(1, 20),
       v=st.integers(0, N_VARIANTS - 1), seed=st.integers(0, 2**16))
def test_recurrent_backward(cell, T, B, I, H, v, seed):
    kind, name, kwargs = cell
    rng = np.random.default_rng(seed)
    m = recurrent(kind, kwargs, I, H, seed).train()
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    m(x)
    m.zero_grad()
    vname, g, values = variants(rng.standard_normal((T, B, H)).astype(np.float32))[v]

    def want():
        if values is None or np.shape(values) != (T, B, H):
            return REJECT
        p = [m.weight_ih_l0.data, m.weight_hh_l0.data, m.bias_ih_l0.data, m.bias_hh_l0.data]
        r = _core.reference_backward(name, x, np.full(B, T, np.int32), False, *p, None, None,
                                     np.asarray(values, np.float32), None, None)
        return r["dx"], r["w_ih"], r["w_hh"], r["b_ih"], r["b_hh"]

    def call():
        dx = m.backward(g)
        return dx, m.weight_ih_l0.grad, m.weight_hh_l0.grad, m.bias_ih_l0.grad, m.bias_hh_l0.grad

    outcome(f"{kind}.backward:grad={vname}", call, ("grad",), want, rtol=1e-3, atol=1e-4)


@FUZZ
@given(cell=st.sampled_from(CELLS), B=sizes, I=sizes, H=st.integers(1, 20), train=st.booleans(),
       v=st.integers(0, N_VARIANTS - 1), seed=st.integers(0, 2**16))
def test_cells(cell, B, I, H, train, v, seed):
    kind, name, kwargs = cell
    rng = np.random.default_rng(seed)
    m = getattr(rnnfast.nn, kind + "Cell")(I, H, **kwargs).train(train)
    vname, x, values = variants(rng.standard_normal((B, I)).astype(np.float32))[v]

    def want():
        if values is None:
            return REJECT
        xv = np.asarray(values, np.float32)
        unbatched = xv.ndim == 1
        if xv.ndim not in (1, 2) or xv.shape[-1] != I or 0 in xv.shape:
            return REJECT
        xb = xv.reshape(1, -1, I)
        p = [m.weight_ih.data, m.weight_hh.data, m.bias_ih.data, m.bias_hh.data]
        _, hn, cn = _core.reference_forward(name, xb, np.ones(xb.shape[1], np.int32), False, *p, None, None)
        if unbatched:
            hn, cn = hn[0], cn[0]
        return (hn, cn) if name == "lstm" else hn

    outcome(f"{kind}Cell.forward:x={vname}", lambda: m(x), ("x", "input"), want)


@pytest.mark.parametrize("isa", ISAS)
@FUZZ
@given(cell=st.sampled_from(CELLS), B=sizes, I=sizes, H=st.integers(1, 20), v=st.integers(0, N_VARIANTS - 1),
       seed=st.integers(0, 2**16))
def test_stream_step(isa, cell, B, I, H, v, seed):
    kind, name, kwargs = cell
    rng = np.random.default_rng(seed)
    m = recurrent(kind, kwargs, I, H, seed).eval()
    vname, x, values = variants(rng.standard_normal((B, I)).astype(np.float32))[v]

    def want():
        if values is None:
            return REJECT
        xv = np.asarray(values, np.float32)
        if xv.shape != (B, I) and not (B == 1 and xv.shape == (I,)):
            return REJECT
        y, _, _ = reference_layer(m, xv.reshape(1, B, I))
        return y[0].reshape(xv.shape[:-1] + (H,))

    with using_isa(isa):
        s = m.stream(batch_size=B)
        outcome(f"Stream.step:x={vname}", lambda: s.step(x), ("x",), want)


@FUZZ
@given(I=sizes, O=sizes, B=sizes, v=st.integers(0, N_VARIANTS - 1), gv=st.integers(0, N_VARIANTS - 1),
       seed=st.integers(0, 2**16))
def test_linear(I, O, B, v, gv, seed):
    rng = np.random.default_rng(seed)
    m = rnnfast.nn.Linear(I, O, seed=seed)
    vname, x, values = variants(rng.standard_normal((B, I)).astype(np.float32))[v]
    W, b = m.weight.data, m.bias.data

    def want():
        if values is None or np.ndim(values) < 1 or np.shape(values)[-1] != I:
            return REJECT
        return np.asarray(values, np.float64) @ W.T + b

    y = outcome(f"Linear.forward:x={vname}", lambda: m(x), ("x", "input"), want)
    if y is None or vname not in ("float32", "nan"):
        return
    gname, g, gvalues = variants(rng.standard_normal(y.shape).astype(np.float32))[gv]
    xv = np.asarray(values, np.float64)

    def want_grad():
        if gvalues is None or np.shape(gvalues) != y.shape:
            return REJECT
        gg = np.asarray(gvalues, np.float64)
        return gg @ W, gg.reshape(-1, O).T @ xv.reshape(-1, I), gg.reshape(-1, O).sum(0)

    m.zero_grad()
    outcome(f"Linear.backward:grad={gname}", lambda: (m.backward(g), m.weight.grad, m.bias.grad), ("grad",),
            want_grad, rtol=1e-4, atol=1e-4)


ID_VARIANTS = ["int64", "int32", "list", "negative", "too_big", "float", "bool", "none", "str", "scalar", "empty",
               "uint8"]


@FUZZ
@given(n=st.integers(1, 10), d=sizes, shape=st.lists(sizes, min_size=1, max_size=2),
       iv=st.sampled_from(ID_VARIANTS), seed=st.integers(0, 2**16))
def test_embedding(n, d, shape, iv, seed):
    rng = np.random.default_rng(seed)
    m = rnnfast.nn.Embedding(n, d)
    ids = rng.integers(0, n, size=shape)
    value, valid = {"int64": (ids, ids), "int32": (ids.astype(np.int32), ids), "list": (ids.tolist(), ids),
                    "negative": (ids - n, None), "too_big": (ids + n, None), "float": (ids.astype(float) + .5, None),
                    "bool": (ids > 0, None), "none": (None, None), "str": ("abc", None),
                    "scalar": (int(ids.flat[0]), ids.flat[0]), "empty": (ids[:0], ids[:0]),
                    "uint8": (ids.astype(np.uint8), ids)}[iv]
    want = (lambda: REJECT) if valid is None else (lambda: m.weight.data[np.asarray(valid, np.int64)])
    outcome(f"Embedding.forward:ids={iv}", lambda: m(value), ("input", "ids"), want)


@FUZZ
@given(F=sizes, B=sizes, v=st.integers(0, N_VARIANTS - 1), seed=st.integers(0, 2**16))
def test_layer_norm(F, B, v, seed):
    rng = np.random.default_rng(seed)
    m = rnnfast.nn.LayerNorm(F)
    vname, x, values = variants(rng.standard_normal((B, F)).astype(np.float32))[v]

    def want():
        if values is None or np.ndim(values) < 1 or np.shape(values)[-1] != F:
            return REJECT
        xv = np.asarray(values, np.float64)
        return (xv - xv.mean(-1, keepdims=True)) / np.sqrt(xv.var(-1, keepdims=True) + 1e-5)

    outcome(f"LayerNorm.forward:x={vname}", lambda: m(x), ("x", "input"), want, rtol=1e-3, atol=1e-3)


@FUZZ
@given(p=st.sampled_from([0.0, 0.3, 1.0, -0.1, 1.5, float("nan"), "0.5", None]), train=st.booleans(),
       v=st.integers(0, N_VARIANTS - 1), seed=st.integers(0, 2**16))
def test_dropout(p, train, v, seed):
    rng = np.random.default_rng(seed)
    valid_p = isinstance(p, float) and 0.0 <= p <= 1.0
    m = outcome(f"Dropout(p={p})", lambda: rnnfast.nn.Dropout(p, seed=seed), ("p",),
                lambda: ANY if valid_p else REJECT)
    if m is None:
        return
    m.train(train)
    vname, x, values = variants(rng.standard_normal((3, 4)).astype(np.float32))[v]
    y = outcome(f"Dropout.forward:x={vname}", lambda: m(x), ("x", "input"), lambda: REJECT if values is None else ANY)
    if y is None or values is None:
        return
    xv = np.asarray(values, np.float32)
    if not train or p == 0.0:
        np.testing.assert_array_equal(np.asarray(y), xv)
    else:  # every finite element dropped (0) or kept and scaled by 1/(1-p) (a dropped inf is nan, as in torch)
        kept = (np.asarray(y) != 0) & np.isfinite(xv)
        scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
        np.testing.assert_allclose(np.asarray(y)[kept], (xv * scale)[kept], rtol=1e-5)


TARGETS = ["valid", "list", "negative", "too_big", "float", "wrong_shape", "none", "ignore"]


@FUZZ
@given(B=sizes, C=sizes, v=st.integers(0, N_VARIANTS - 1), tv=st.sampled_from(TARGETS),
       seed=st.integers(0, 2**16))
def test_cross_entropy(B, C, v, tv, seed):
    rng = np.random.default_rng(seed)
    vname, logits, values = variants(rng.standard_normal((B, C)).astype(np.float32))[v]
    t = rng.integers(0, C, size=B)
    target, tvalid = {"valid": (t, t), "list": (t.tolist(), t), "negative": (t - C - 200, None),
                      "too_big": (t + C + 1, None), "float": (t + 0.5, None), "wrong_shape": (t[:-1], None),
                      "none": (None, None), "ignore": (np.where(t == 0, -100, t), np.where(t == 0, -100, t))}[tv]

    def want():
        if values is None or tvalid is None or np.ndim(values) != 2 or np.shape(values)[0] != B:
            return REJECT
        z = np.asarray(values, np.float64)
        if z.shape[1] == 0 or np.max(tvalid) >= z.shape[1]:
            return REJECT
        logp = z - z.max(-1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
        keep = tvalid != -100
        return -logp[np.arange(B)[keep], tvalid[keep]].sum() / keep.sum() if keep.any() else np.nan

    outcome(f"cross_entropy:logits={vname}:target={tv}", lambda: losses.cross_entropy(logits, target)[0],
            ("logits", "target"), want, rtol=1e-4, atol=1e-5)


@FUZZ
@given(B=sizes, F=sizes, v=st.integers(0, N_VARIANTS - 1), seed=st.integers(0, 2**16))
def test_mse_loss(B, F, v, seed):
    rng = np.random.default_rng(seed)
    target = rng.standard_normal((B, F)).astype(np.float32)
    vname, pred, values = variants(rng.standard_normal((B, F)).astype(np.float32))[v]
    want = lambda: REJECT if values is None or np.shape(values) != (B, F) else \
        np.mean((np.asarray(values, np.float64) - target) ** 2)  # noqa: E731
    outcome(f"mse_loss:pred={vname}", lambda: losses.mse_loss(pred, target)[0], ("pred", "target"), want)


def _ctc_brute_force(logits, targets, input_lengths, target_lengths):
    """torch's 'mean' CTC loss by enumerating every alignment (tiny T and C only); blank = 0."""
    import itertools
    z = np.asarray(logits, np.float64)
    logp = z - z.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    total = 0.0
    for b, (n, k) in enumerate(zip(input_lengths, target_lengths)):
        want, p = tuple(targets[b][:k]), 0.0
        for path in itertools.product(range(z.shape[2]), repeat=int(n)):
            labels = tuple(c for i, c in enumerate(path) if c != 0 and (i == 0 or path[i - 1] != c))
            if labels == want:
                p += np.exp(sum(logp[t, b, c] for t, c in enumerate(path)))
        total += (-np.log(p) if p > 0 or np.isnan(p) else np.inf) / max(k, 1)   # NaN scores give NaN
    return total / len(input_lengths)


CTC_TARGETS = ["valid", "list", "concatenated", "blank", "too_big", "negative", "float", "wrong_rows"]
CTC_LENGTHS = ["valid", "list", "too_long", "negative", "float", "wrong_count"]


@FUZZ
@given(T=st.integers(1, 4), B=st.integers(1, 3), C=st.integers(2, 4), v=st.integers(0, N_VARIANTS - 1),
       tv=st.sampled_from(CTC_TARGETS), lv=st.sampled_from(CTC_LENGTHS), seed=st.integers(0, 2**16))
def test_ctc_loss(T, B, C, v, tv, lv, seed):
    rng = np.random.default_rng(seed)
    vname, logits, values = variants(rng.standard_normal((T, B, C)).astype(np.float32))[v]
    S = 2
    t = rng.integers(1, C, (B, S))
    tl = rng.integers(0, S + 1, B)
    il = rng.integers(1, T + 1, B)
    flat = np.concatenate([t[b, :tl[b]] for b in range(B)])
    targets, tvalid = {"valid": (t, t), "list": (t.tolist(), t), "concatenated": (flat, t),
                       "blank": (np.where(np.arange(S) < tl[:, None], 0, t), None if tl.any() else t),
                       "too_big": (t + C, None if tl.any() else t), "negative": (-t, None if tl.any() else t),
                       "float": (t + 0.5, None), "wrong_rows": (t[:-1], None)}[tv]
    lengths, lvalid = {"valid": (il, il), "list": (il.tolist(), il), "too_long": (il + T, None),
                       "negative": (il - T - 1, None), "float": (il + 0.5, None), "wrong_count": (il[:-1], None)}[lv]

    def want():
        if values is None or tvalid is None or lvalid is None or np.ndim(values) != 3:
            return REJECT
        z = np.asarray(values, np.float64)
        if z.shape[1] != B or z.shape[2] < C or z.shape[0] < lvalid.max():
            return REJECT
        return _ctc_brute_force(z, tvalid, lvalid, tl)

    outcome(f"ctc_loss:logits={vname}:targets={tv}:input_lengths={lv}",
            lambda: losses.ctc_loss(logits, targets, lengths, tl)[0],
            ("logits", "targets", "input_lengths", "target_lengths"), want, rtol=1e-4, atol=1e-5)


HYPER = [("valid", 0.1), ("zero", 0.0), ("negative", -1.0), ("nan", float("nan")), ("inf", float("inf")),
         ("str", "0.1"), ("none", None), ("bool", True), ("array", np.array([0.1, 0.2]))]


@FUZZ
@given(opt=st.sampled_from(["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"]), hv=st.sampled_from(HYPER),
       seed=st.integers(0, 2**16))
def test_optimizer_lr(opt, hv, seed):
    rng = np.random.default_rng(seed)
    p = rnnfast.nn.Parameter(rng.standard_normal(4).astype(np.float32))
    p.grad = rng.standard_normal(4).astype(np.float32)
    hname, lr = hv
    ok = hname in ("valid", "zero")
    o = outcome(f"{opt}(lr={hname})", lambda: getattr(optim, opt)([p], lr=lr), ("lr",),
                lambda: ANY if ok else REJECT)
    if o is None or opt != "SGD":
        return
    before, g = p.data.copy(), p.grad.copy()
    o.step()
    np.testing.assert_allclose(p.data, before - lr * g, rtol=1e-6)


@pytest.mark.filterwarnings("ignore:clip_grad_norm")  # the non-finite norms are the point here
@FUZZ
@given(n=sizes, norm=st.sampled_from([("valid", 1.0), ("small", 1e-3), ("zero", 0.0), ("negative", -1.0),
                                      ("nan", float("nan")), ("str", "1"), ("none", None)]),
       scale=st.sampled_from([1.0, 1e3, float("nan"), float("inf")]), seed=st.integers(0, 2**16))
def test_clip_grad_norm(n, norm, scale, seed):
    rng = np.random.default_rng(seed)
    params = [rnnfast.nn.Parameter(np.zeros(3, np.float32)) for _ in range(n)]
    grads = [(rng.standard_normal(3) * scale).astype(np.float32) for _ in params]
    for p, g in zip(params, grads):
        p.grad = g.copy()
    name, max_norm = norm
    total = np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads))

    def want():
        if name not in ("valid", "small", "zero"):
            return REJECT
        return total

    got = outcome(f"clip_grad_norm(max_norm={name}, grads x{scale})", lambda: optim.clip_grad_norm(params, max_norm),
                  ("max_norm",), want, rtol=1e-5, atol=1e-6)
    if got is not None and np.isfinite(total) and total > max_norm:
        clipped = np.sqrt(sum(float(np.sum(p.grad.astype(np.float64) ** 2)) for p in params))
        np.testing.assert_allclose(clipped, max_norm, rtol=1e-3, atol=1e-6)


@FUZZ
@given(iv=st.sampled_from(ID_VARIANTS), cv=st.sampled_from(INT_VARIANTS), seed=st.integers(0, 2**16))
def test_one_hot(iv, cv, seed):
    rng = np.random.default_rng(seed)
    cname, C = cv
    n = 3
    ids = rng.integers(0, n, size=4)
    value, valid = {"int64": (ids, ids), "int32": (ids.astype(np.int32), ids), "list": (ids.tolist(), ids),
                    "negative": (ids - n, None), "too_big": (ids + 10**6, None), "float": (ids + .5, None),
                    "bool": (ids > 0, None), "none": (None, None), "str": ("abc", None),
                    "scalar": (int(ids[0]), ids[0]), "empty": (ids[:0], ids[:0]), "uint8": (ids.astype(np.uint8), ids)}[iv]

    def want():
        if valid is None or cname not in ("one", "two", "numpy_int"):
            return REJECT
        if np.size(valid) and np.max(valid) >= int(C):
            return REJECT
        return np.eye(int(C), dtype=np.float32)[np.asarray(valid, np.int64)]

    outcome(f"one_hot:ids={iv}:num_classes={cname}", lambda: text.one_hot(value, C), ("ids", "num_classes"), want)


@FUZZ
@given(lv=st.sampled_from(LENGTHS), mv=st.sampled_from(INT_VARIANTS + [("none_ok", None)]), seed=st.integers(0, 2**16))
def test_length_mask(lv, mv, seed):
    rng = np.random.default_rng(seed)
    lengths, valid = lengths_variant(lv, 4, 3, rng)
    if lv in ("zero", "too_long", "wrong_count"):
        valid = lengths  # a mask allows empty sequences, and has no T or B to disagree with
    mname, max_len = mv

    def want():
        if valid is None or isinstance(valid, str):
            return REJECT
        if mname in ("none", "none_ok"):
            T = int(np.max(valid))
        elif mname in ("two", "one", "numpy_int", "zero"):
            T = int(max_len)
        else:
            return REJECT
        if T < int(np.max(valid)):
            return REJECT
        return np.arange(T)[None, :] < np.asarray(valid)[:, None]

    if lv == "none":
        return  # None is not a list of lengths here; covered by the recurrent test
    outcome(f"length_mask:lengths={lv}:max_len={mname}", lambda: text.length_mask(lengths, max_len),
            ("lengths", "max_len"), want)


@FUZZ
@given(T=sizes, F=sizes, v=st.integers(0, N_VARIANTS - 1), seed=st.integers(0, 2**16))
def test_standardize(T, F, v, seed):
    rng = np.random.default_rng(seed)
    vname, x, values = variants(rng.standard_normal((T, F)).astype(np.float32))[v]

    def want():
        if values is None or np.ndim(values) < 1 or np.shape(values)[0] == 0 or not np.isfinite(values).all():
            return REJECT
        xv = np.asarray(values, np.float64)
        std = xv.std(0)
        std = np.where(std < 1e-8, 1.0, std)
        return (xv - xv.mean(0)) / std

    outcome(f"standardize:x={vname}", lambda: standardize(x)[0], ("x",), want, rtol=1e-4, atol=1e-4)


@FUZZ
@given(iv=st.sampled_from(INT_VARIANTS), hv=st.sampled_from(INT_VARIANTS), v=st.integers(0, N_VARIANTS - 1),
       seed=st.integers(0, 2**16))
def test_sliding_windows(iv, hv, v, seed):
    rng = np.random.default_rng(seed)
    vname, series, values = variants(rng.standard_normal((8, 2)).astype(np.float32))[v]
    (iname, input_len), (hname, horizon) = iv, hv
    good = ("one", "two", "numpy_int")

    def want():
        if iname not in good or hname not in good or values is None or np.ndim(values) != 2:
            return REJECT
        xv = np.asarray(values, np.float32)
        if not np.isfinite(xv).all() or xv.shape[0] < int(input_len) + int(horizon):
            return REJECT
        n = xv.shape[0] - int(input_len) - int(horizon) + 1
        xs = np.stack([xv[i:i + int(input_len)] for i in range(n)])
        ys = np.stack([xv[i + int(input_len):i + int(input_len) + int(horizon)] for i in range(n)])
        return xs, ys

    if vname in ("scalar", "extra_dim", "wrong_last_dim", "empty"):
        return  # other shapes of series: their own rules (1-D series are allowed), checked elsewhere
    outcome(f"sliding_windows:series={vname}:input_len={iname}:horizon={hname}",
            lambda: sliding_windows(series, input_len, horizon), ("series", "input_len", "horizon"), want)


@FUZZ
@given(kind=st.sampled_from(["truncate", "flip", "zero"]), pos=st.floats(0, 1), seed=st.integers(0, 2**16))
def test_checkpoint_corruption(tmp_path_factory, kind, pos, seed):
    path = tmp_path_factory.mktemp("ckpt") / "w.npz"
    model = rnnfast.nn.LSTM(3, 4, seed=seed)
    checkpoint.save_weights(path, model)
    data = bytearray(path.read_bytes())
    i = min(int(pos * len(data)), len(data) - 1)
    if kind == "truncate":
        data = data[:i]
    elif kind == "flip":
        data[i] ^= 0xFF
    else:
        data[i:i + 64] = bytes(len(data[i:i + 64]))
    path.write_bytes(bytes(data))
    fresh = rnnfast.nn.LSTM(3, 4, seed=seed + 1)
    want_state = model.state_dict()

    def call():
        checkpoint.load_weights(path, fresh)
        return [fresh.state_dict()[k] for k in want_state]

    # A flipped byte inside array data cannot be detected without checksums: then the load must
    # still give arrays of the right shapes (ANY values); everything else must be an error.
    outcome(f"load_weights:{kind}", call, (str(path), "w.npz", "checkpoint"), lambda: ANY)


STATE = ["valid", "missing", "extra", "wrong_shape", "list", "float64", "none_value", "str_value", "not_dict"]


@FUZZ
@given(sv=st.sampled_from(STATE), strict=st.booleans(), seed=st.integers(0, 2**16))
def test_load_torch_state_dict(sv, strict, seed):
    from rnnfast import interop
    src = rnnfast.nn.GRU(3, 4, seed=seed)
    dst = rnnfast.nn.GRU(3, 4, seed=seed + 1)
    sd = dict(src.state_dict())
    first = next(iter(sd))
    if sv == "missing":
        del sd[first]
    elif sv == "extra":
        sd["bogus"] = np.zeros(2, np.float32)
    elif sv == "wrong_shape":
        sd[first] = np.zeros((1, 1), np.float32)
    elif sv == "list":
        sd[first] = sd[first].tolist()
    elif sv == "float64":
        sd[first] = sd[first].astype(np.float64)
    elif sv == "none_value":
        sd[first] = None
    elif sv == "str_value":
        sd[first] = "abc"
    state = [1, 2] if sv == "not_dict" else sd
    names = ("state_dict", first, "bogus", "strict", "missing", "unexpected")

    def want():
        if sv in ("wrong_shape", "none_value", "str_value", "not_dict") or (strict and sv in ("missing", "extra")):
            return REJECT
        return [src.state_dict()[k] for k in src.state_dict() if not (sv == "missing" and k == first)]

    def call():
        interop.load_torch_state_dict(dst, state, strict=strict)
        return [dst.state_dict()[k] for k in dst.state_dict() if not (sv == "missing" and k == first)]

    outcome(f"load_torch_state_dict:{sv}:strict={strict}", call, names, want)


@FUZZ
@given(kind=st.sampled_from(["RNN", "LSTM", "GRU", "Linear"]), arg=st.sampled_from(["input_size", "hidden_size",
                                                                                      "num_layers"]),
       iv=st.sampled_from(INT_VARIANTS))
def test_constructor_sizes(kind, arg, iv):
    iname, value = iv
    if arg == "num_layers" and iname == "huge":
        return  # 2**62 layers are valid, just more than memory: covered by the MemoryError tests
    if kind == "Linear":
        arg = {"input_size": "in_features", "hidden_size": "out_features"}.get(arg)
        if arg is None:
            return
    kwargs = {"input_size": 3, "hidden_size": 4} if kind != "Linear" else {"in_features": 3, "out_features": 4}
    kwargs[arg] = value
    good = iname in ("one", "two", "numpy_int")
    if iname == "huge":
        return  # test_constructor_huge_sizes
    cls = getattr(rnnfast.nn, kind)
    outcome(f"{kind}({arg}={iname})", lambda: cls(**kwargs), (arg,), lambda: ANY if good else REJECT)


@pytest.mark.parametrize("kind, arg", [("RNN", "input_size"), ("LSTM", "hidden_size"), ("GRU", "input_size"),
                                       ("Linear", "in_features")])
def test_constructor_huge_sizes(kind, arg):
    kwargs = {"input_size": 3, "hidden_size": 4} if kind != "Linear" else {"in_features": 3, "out_features": 4}
    kwargs[arg] = 2**62
    outcome(f"{kind}({arg}=huge)", lambda: getattr(rnnfast.nn, kind)(**kwargs), (arg,), lambda: REJECT)


@FUZZ
@given(iv=st.sampled_from(INT_VARIANTS))
def test_set_num_threads(iv):
    iname, n = iv
    before = rnnfast.get_num_threads()
    try:
        outcome(f"set_num_threads({iname})", lambda: rnnfast.set_num_threads(n), ("num_threads",),
                lambda: ANY if iname in ("one", "two", "numpy_int") else REJECT)
    finally:
        rnnfast.set_num_threads(before)


def test_fuzz_examples_setting_is_read():
    # The counting script relies on RNNFAST_FUZZ_EXAMPLES reaching hypothesis.
    assert FUZZ.max_examples == int(os.environ.get("RNNFAST_FUZZ_EXAMPLES", "15"))
