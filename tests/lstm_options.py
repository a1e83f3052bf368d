"""Kernel-level problems for the LSTM options (proj_size: w_hr; layer_norm: ln), shared by
test_proj_size.py and test_layer_norm.py: random data, the optimised kernels (one direction or
both at once) and the scalar twin, all returning the same dict of outputs and gradients."""
import numpy as np

import rnnfast
from rnnfast import _core
from helpers import assert_gradients_match_differences, randn


def make_problem(T, B, I, H, rng, P=0, layer_norm=False, ragged=True, dtype=np.float32):
    """P > 0: a projection w_hr (P, H); layer_norm: gains near 1 and biases near 0 (18H)."""
    S = P or H  # columns of h
    p = dict(x=randn(rng, T, B, I), w_ih=randn(rng, 4 * H, I, scale=0.4), w_hh=randn(rng, 4 * H, S, scale=0.4),
             b_ih=randn(rng, 4 * H, scale=0.2), b_hh=randn(rng, 4 * H, scale=0.2), h0=randn(rng, B, S),
             c0=randn(rng, B, H), dy=randn(rng, T, B, S), dhn=randn(rng, B, S), dcn=randn(rng, B, H))
    if P:
        p["w_hr"] = randn(rng, P, H, scale=0.4)
    if layer_norm:
        p["ln"] = np.concatenate([1 + randn(rng, 4 * H, scale=0.3), randn(rng, 4 * H, scale=0.2),
                                  1 + randn(rng, 4 * H, scale=0.3), randn(rng, 4 * H, scale=0.2),
                                  1 + randn(rng, H, scale=0.3), randn(rng, H, scale=0.2)])
    p = {k: v.astype(dtype) for k, v in p.items()}
    lengths = rng.integers(1, T + 1, size=B).astype(np.int32) if ragged else np.full(B, T, np.int32)
    return p, lengths


def grad_names(p):
    return ("w_ih", "w_hh", "b_ih", "b_hh") + tuple(k for k in ("w_hr", "ln") if k in p)


def zero_grads(p):
    return {k: np.zeros(p[k].shape, np.float32) for k in grad_names(p)}


def option_kwargs(p, grads=None, reference=False):
    """The option's keyword for PackedWeights (the scalar twin's with reference; given grads, for
    layer_backward)."""
    if grads is None:
        ln = "ln" if reference else "layer_norm"
        return {"w_hr": p["w_hr"]} if "w_hr" in p else {ln: p["ln"]} if "ln" in p else {}
    return {"grad_w_hr": grads["w_hr"]} if "w_hr" in p else {"grad_layer_norm": grads["ln"]} if "ln" in p else {}


def packed_of(p, train):
    return _core.PackedWeights("lstm", p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], train, **option_kwargs(p))


def run_optimised(p, lengths, reverse, train=True):
    T, B, I = p["x"].shape
    H, S = p["c0"].shape[1], p["h0"].shape[1]
    packed = packed_of(p, train)
    y = np.full((T, B, S), np.nan, np.float32)
    hn, cn = np.empty((B, S), np.float32), np.empty((B, H), np.float32)
    cache = _core.TrainCache() if train else None
    _core.layer_forward(packed, p["x"], lengths, reverse, p["h0"], p["c0"], y, 0, hn, cn, cache)
    out = dict(y=y, hn=hn, cn=cn)
    if train:
        g = zero_grads(p)
        dx, dh0, dc0 = np.empty((T, B, I), np.float32), np.empty((B, S), np.float32), np.empty((B, H), np.float32)
        _core.layer_backward(packed, cache, p["x"], p["dy"], 0, p["dhn"], p["dcn"], dx, False, dh0, dc0,
                             g["w_ih"], g["w_hh"], g["b_ih"], g["b_hh"], **option_kwargs(p, g))
        out.update(dx=dx, dh0=dh0, dc0=dc0, **{"g_" + k: v for k, v in g.items()})
    return out


def run_reference(p, lengths, reverse):
    args = ("lstm", p["x"], lengths, reverse, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], p["h0"], p["c0"])
    y, hn, cn = _core.reference_forward(*args, **option_kwargs(p, reference=True))
    g = _core.reference_backward(*args, p["dy"], p["dhn"], p["dcn"], **option_kwargs(p, reference=True))
    return dict(y=y, hn=hn, cn=cn, dx=g["dx"], dh0=g["dh0"], dc0=g["dc0"], **{"g_" + k: g[k] for k in grad_names(p)})


def assert_close_to(ours, ref, tol):
    for k, r in ref.items():
        err = np.abs(ours[k] - r).max()
        assert err <= tol * (1 + np.abs(r).max()), f"{k}: max abs error {err:.3g}"


def assert_pair_equals_separate(pf, pb, lengths):
    """Both directions through layer_forward_pair / layer_backward_pair: each direction's outputs,
    states and gradients bit for bit its own layer_forward/layer_backward's; dx their sum."""
    T, B, I = pf["x"].shape
    H, S = pf["c0"].shape[1], pf["h0"].shape[1]
    separate = [run_optimised(pf, lengths, False), run_optimised(pb, lengths, True)]
    stack = lambda k: np.ascontiguousarray(np.stack([pf[k], pb[k]]))  # noqa: E731
    packed, caches = [packed_of(q, True) for q in (pf, pb)], [_core.TrainCache(), _core.TrainCache()]
    y, hn, cn = np.empty((T, B, 2 * S), np.float32), np.empty((2, B, S), np.float32), np.empty((2, B, H), np.float32)
    _core.layer_forward_pair(*packed, pf["x"], lengths, stack("h0"), stack("c0"), y, hn, cn, *caches)
    grads = [zero_grads(pf), zero_grads(pb)]
    dx, dh0, dc0 = np.empty((T, B, I), np.float32), np.empty((2, B, S), np.float32), np.empty((2, B, H), np.float32)
    dy = np.ascontiguousarray(np.concatenate([pf["dy"], pb["dy"]], axis=2))
    _core.layer_backward_pair(*packed, *caches, pf["x"], dy, stack("dhn"), stack("dcn"), dx, dh0, dc0,
                              *(tuple(g[k] for k in grad_names(pf)) for g in grads))
    for d in range(2):
        pair = dict(y=y[:, :, d * S:(d + 1) * S], hn=hn[d], cn=cn[d], dh0=dh0[d], dc0=dc0[d],
                    **{"g_" + k: grads[d][k] for k in grad_names(pf)})
        for k, v in pair.items():
            np.testing.assert_array_equal(v, separate[d][k], err_msg=f"direction {d}, {k}")
    np.testing.assert_allclose(dx, separate[0]["dx"] + separate[1]["dx"], rtol=1e-5, atol=1e-6)


def assert_twin_matches_differences(p, lengths, reverse):
    """The twin's gradients (float64 p) against central differences of its forward's loss."""
    names = ("w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0")

    def loss(q):
        y, hn, cn = _core.reference_forward("lstm", q["x"], lengths, reverse, *(q[k] for k in names),
                                            **option_kwargs(q, reference=True))
        return (y * q["dy"]).sum() + (hn * q["dhn"]).sum() + (cn * q["dcn"]).sum()

    g = _core.reference_backward("lstm", p["x"], lengths, reverse, *(p[k] for k in names), p["dy"], p["dhn"],
                                 p["dcn"], **option_kwargs(p, reference=True))
    assert_gradients_match_differences(loss, p, g, {"x": "dx", "h0": "dh0", "c0": "dc0",
                                                    **{k: k for k in grad_names(p)}})


def assert_matches_double_twin(p, lengths, reverse, tol):
    """Training forward and backward, and the inference forward, against the float64 twin."""
    ref = run_reference({k: v.astype(np.float64) for k, v in p.items()}, lengths, reverse)
    assert_close_to(run_optimised(p, lengths, reverse), ref, tol)
    assert_close_to(run_optimised(p, lengths, reverse, train=False), {k: ref[k] for k in ("y", "hn", "cn")}, tol)


def assert_same_bits_for_thread_counts(p, lengths):
    """Only output elements are split between threads: 1, 2 and 3 threads give the same bits, in
    training (forward and backward) and in inference."""
    saved, runs = rnnfast.get_num_threads(), []
    try:
        for threads in (1, 2, 3):
            rnnfast.set_num_threads(threads)
            runs.append({**run_optimised(p, lengths, True),
                         **{"eval_" + k: v for k, v in run_optimised(p, lengths, True, train=False).items()}})
    finally:
        rnnfast.set_num_threads(saved)
    for run in runs[1:]:
        for k, v in run.items():
            np.testing.assert_array_equal(v, runs[0][k], err_msg=k)
