"""Parity with torch.nn.RNN/LSTM/GRU over the grid of issue 2, on every ISA path of this machine:
outputs, final states, and the gradients of the input, the initial state and every parameter."""
import itertools
import zlib

import numpy as np
import pytest

import rnnfast
from conftest import require_torch
from helpers import ISAS, randn, torch_twin, using_isa

CELLS = [("RNN", "tanh"), ("RNN", "relu"), ("LSTM", None), ("GRU", None)]


def grid():
    """27 (B, T, H) shapes per cell; the other options cycle so each value meets many shapes."""
    cases = []
    for c, (kind, nl) in enumerate(CELLS):
        for i, (B, T, H) in enumerate(itertools.product([1, 3, 16], [1, 7, 50], [1, 17, 130])):
            j = i + c
            cases.append(dict(kind=kind, nonlinearity=nl, B=B, T=T, H=H, I=[17, 1, 130][j % 3],
                              num_layers=[1, 3][j % 2], bidirectional=bool((j // 2) % 2),
                              batch_first=bool((j // 3) % 2), ragged=B > 1 and j % 3 != 0,
                              hx=j % 4 in (1, 2), grad_state=j % 5 in (0, 3)))
    return cases


def case_id(c):
    return (f"{c['kind']}{'-' + c['nonlinearity'] if c['nonlinearity'] else ''}-B{c['B']}T{c['T']}I{c['I']}H{c['H']}"
            f"-L{c['num_layers']}{'-bi' if c['bidirectional'] else ''}{'-bf' if c['batch_first'] else ''}"
            f"{'-ragged' if c['ragged'] else ''}{'-hx' if c['hx'] else ''}{'-gs' if c['grad_state'] else ''}")


def build(c, seed):
    kwargs = dict(num_layers=c["num_layers"], batch_first=c["batch_first"], bidirectional=c["bidirectional"], seed=seed)
    if c["kind"] == "RNN":
        kwargs["nonlinearity"] = c["nonlinearity"]
    return getattr(rnnfast.nn, c["kind"])(c["I"], c["H"], **kwargs)


def check_close(name, ours, ref, atol, rtol=1e-4):
    ref = ref.detach().numpy() if hasattr(ref, "detach") else ref
    assert ours.shape == ref.shape, f"{name}: shape {ours.shape} vs {ref.shape}"
    err = np.abs(ours - ref).max() if ours.size else 0.0
    bound = atol + rtol * np.abs(ref).max()
    assert err <= bound, f"{name}: max abs error {err:.3g} > {bound:.3g}"


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("c", grid(), ids=case_id)
def test_matches_torch(c, isa):
    torch = require_torch()
    rng = np.random.default_rng(zlib.crc32(case_id(c).encode()))
    m = build(c, seed=int(rng.integers(1 << 30)))
    twin = torch_twin(torch, m)
    B, T, H, L, D = c["B"], c["T"], c["H"], c["num_layers"], 2 if c["bidirectional"] else 1
    lstm = c["kind"] == "LSTM"
    x = randn(rng, *((B, T, c["I"]) if c["batch_first"] else (T, B, c["I"])))
    lengths = rng.integers(1, T + 1, size=B) if c["ragged"] else None
    if lengths is not None:
        lengths[rng.integers(B)] = T  # torch pads to the longest sample
    hx = None
    if c["hx"]:
        hx = (randn(rng, L * D, B, H), randn(rng, L * D, B, H)) if lstm else randn(rng, L * D, B, H)

    with using_isa(isa):
        y, state = m(x, hx=hx, lengths=lengths)
    xt = torch.from_numpy(x).requires_grad_()
    hxt = None
    if hx is not None:
        hxt = tuple(torch.from_numpy(h).requires_grad_() for h in hx) if lstm else torch.from_numpy(hx).requires_grad_()
    if lengths is not None:
        packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.from_numpy(lengths), batch_first=c["batch_first"],
                                                         enforce_sorted=False)
        out, state_t = twin(packed, hxt)
        yt, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=c["batch_first"], total_length=T)
    else:
        yt, state_t = twin(xt, hxt)

    check_close("output", y, yt, atol=1e-5)
    states = state if lstm else (state,)
    states_t = state_t if lstm else (state_t,)
    for name, s, st in zip(["h_n", "c_n"], states, states_t):
        check_close(name, s, st, atol=1e-5)

    gy = randn(rng, *y.shape)
    gs = tuple(randn(rng, L * D, B, H) for _ in states) if c["grad_state"] else None
    with using_isa(isa):
        dx = m.backward(gy, grad_state=(gs if lstm else gs[0]) if gs else None)
    loss = (yt * torch.from_numpy(gy)).sum()
    if gs:
        loss = loss + sum((st * torch.from_numpy(g)).sum() for st, g in zip(states_t, gs))
    loss.backward()

    check_close("grad x", dx, xt.grad, atol=1e-5)
    if hx is not None:
        grads = m.grad_hx if lstm else (m.grad_hx,)
        for name, g, h in zip(["grad h0", "grad c0"], grads, hxt if lstm else (hxt,)):
            check_close(name, g, h.grad, atol=1e-5)
    torch_params = dict(twin.named_parameters())
    for name, p in m.named_parameters():
        check_close(f"grad {name}", p.grad, torch_params[name].grad, atol=1e-5)
