"""PyTorch interop: module conversion, state dicts both ways, and identical training in both frameworks."""
import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

import rnnfast.interop as interop
from rnnfast import losses, nn, optim

TOL = dict(rtol=1e-5, atol=1e-5)


def test_importing_interop_does_not_import_torch():
    code = "import sys, rnnfast, rnnfast.interop; print('torch' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(Path(interop.__file__).resolve().parents[1]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False", out.stderr


# from_torch: every supported module gives the same outputs ------------------------------------
RECURRENT = [
    ("RNN", dict(num_layers=2, nonlinearity="relu", bidirectional=True, batch_first=True)),
    ("RNN", dict(bias=False)),
    ("LSTM", dict(num_layers=2, bidirectional=True, dropout=0.3)),
    ("LSTM", dict(bias=False, batch_first=True)),
    ("GRU", dict(num_layers=3, batch_first=True)),
    ("GRU", dict(bidirectional=True, bias=False)),
]


def _np(t):
    return t.detach().numpy()


@pytest.mark.parametrize("kind, kw", RECURRENT)
def test_from_torch_recurrent(torch, kind, kw):
    torch.manual_seed(0)
    tm = getattr(torch.nn, kind)(5, 7, **kw).eval()
    m = interop.from_torch(tm)
    assert type(m) is getattr(nn, kind) and not m.training
    for attr in ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "bidirectional", "dropout"):
        assert getattr(m, attr) == getattr(tm, attr), attr
    if kind == "RNN":
        assert m.nonlinearity == tm.nonlinearity
    x = np.random.default_rng(1).standard_normal((3, 4, 5)).astype(np.float32)
    y, state = m(x)
    ty, tstate = tm(torch.from_numpy(x))
    np.testing.assert_allclose(y, _np(ty), **TOL)
    for a, b in zip(state if kind == "LSTM" else (state,), tstate if kind == "LSTM" else (tstate,)):
        np.testing.assert_allclose(a, _np(b), **TOL)
    # the same from the bare state dict, configuration read from names and shapes
    m2 = interop.from_torch(tm.state_dict(), nonlinearity=getattr(tm, "nonlinearity", "tanh"),
                            batch_first=tm.batch_first)
    assert (type(m2), m2.num_layers, m2.bidirectional, m2.bias) == (type(m), m.num_layers, m.bidirectional, m.bias)
    np.testing.assert_array_equal(m2.eval()(x)[0], y)


@pytest.mark.parametrize("kind, kw", [("RNNCell", dict(nonlinearity="relu")), ("RNNCell", dict(bias=False)),
                                      ("LSTMCell", {}), ("GRUCell", dict(bias=False))])
def test_from_torch_cells(torch, kind, kw):
    torch.manual_seed(1)
    tm = getattr(torch.nn, kind)(4, 6, **kw)
    m = interop.from_torch(tm)
    assert type(m) is getattr(nn, kind) and m.bias == tm.bias
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    h = rng.standard_normal((3, 6)).astype(np.float32)
    hx = (h, h * 0.5) if kind == "LSTMCell" else h
    thx = tuple(torch.from_numpy(a) for a in hx) if kind == "LSTMCell" else torch.from_numpy(hx)
    out, tout = m(x, hx), tm(torch.from_numpy(x), thx)
    for a, b in zip(out if kind == "LSTMCell" else (out,), tout if kind == "LSTMCell" else (tout,)):
        np.testing.assert_allclose(a, _np(b), **TOL)
    m2 = interop.from_torch(tm.state_dict(), nonlinearity=getattr(tm, "nonlinearity", "tanh"))
    assert type(m2) is type(m) and m2.bias == m.bias
    np.testing.assert_array_equal(m2(x, hx)[0], out[0])


def test_from_torch_feed_forward_and_sequential(torch):
    torch.manual_seed(2)
    emb = torch.nn.Embedding(10, 4, padding_idx=-1)
    m = interop.from_torch(emb)
    assert (m.num_embeddings, m.embedding_dim, m.padding_idx, m.freeze) == (10, 4, 9, False)
    ids = np.array([[1, 9, 3], [0, 2, 9]])
    np.testing.assert_array_equal(m(ids), _np(emb(torch.from_numpy(ids))))
    frozen = torch.nn.Embedding.from_pretrained(torch.randn(5, 3), freeze=True)
    assert interop.from_torch(frozen).freeze
    for bias in (True, False):
        lin = torch.nn.Linear(4, 3, bias=bias)
        m = interop.from_torch(lin)
        assert (m.in_features, m.out_features, m.bias is not None) == (4, 3, bias)
        x = np.random.default_rng(3).standard_normal((2, 5, 4)).astype(np.float32)
        np.testing.assert_allclose(m(x), _np(lin(torch.from_numpy(x))), **TOL)
    seq = torch.nn.Sequential(OrderedDict(embed=torch.nn.Embedding(10, 4), proj=torch.nn.Linear(4, 6),
                                          norm=torch.nn.LayerNorm(6), drop=torch.nn.Dropout(0.5),
                                          out=torch.nn.Linear(6, 2, bias=False))).eval()
    m = interop.from_torch(seq)
    assert isinstance(m, nn.Sequential) and [k for k, _ in m.named_children()] == ["embed", "proj", "norm", "drop", "out"]
    assert list(m.state_dict()) == list(seq.state_dict())
    np.testing.assert_allclose(m(ids), _np(seq(torch.from_numpy(ids))), **TOL)
    # state dicts of a Linear / an Embedding
    assert isinstance(interop.from_torch(torch.nn.Linear(3, 2).state_dict()), nn.Linear)
    with pytest.raises(ValueError, match="kind='Linear' or kind='Embedding'"):
        interop.from_torch(emb.state_dict())
    e2 = interop.from_torch(emb.state_dict(), kind="Embedding")
    np.testing.assert_array_equal(e2.weight.data, _np(emb.weight))


def test_from_torch_unsupported(torch):
    with pytest.raises(ValueError, match="weight_hr_l0 .a projection. needs an LSTM"):
        interop.from_torch(torch.nn.LSTM(4, 6, proj_size=3).state_dict(), kind="GRU")
    with pytest.raises(ValueError, match="max_norm"):
        interop.from_torch(torch.nn.Embedding(5, 3, max_norm=1.0))
    with pytest.raises(ValueError, match="scale_grad_by_freq"):
        interop.from_torch(torch.nn.Embedding(5, 3, scale_grad_by_freq=True))
    with pytest.raises(TypeError, match=r"module.1 \(Conv1d\): unsupported module type"):
        interop.from_torch(torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Conv1d(3, 3, 1)))
    with pytest.raises(TypeError, match="expected a torch.nn.Module or a state dict, got int"):
        interop.from_torch(3)
    with pytest.raises(ValueError, match="kind: 'GRU' does not fit"):
        interop.from_torch(torch.nn.LSTM(4, 6).state_dict(), kind="GRU")
    with pytest.raises(ValueError, match="cannot tell the module"):
        interop.from_torch(torch.nn.LayerNorm(3).state_dict())


# rnnfast -> torch and back ----------------------------------------------------------------------
def test_to_torch_state_dict_loads_into_torch(torch):
    cases = [(nn.LSTM(5, 7, num_layers=2, bidirectional=True, seed=0), torch.nn.LSTM(5, 7, 2, bidirectional=True)),
             (nn.GRU(5, 7, bias=False, seed=1), torch.nn.GRU(5, 7, bias=False)),
             (nn.RNN(5, 7, nonlinearity="relu", seed=2), torch.nn.RNN(5, 7, nonlinearity="relu")),
             (nn.GRUCell(5, 7, seed=3), torch.nn.GRUCell(5, 7)),
             (nn.Linear(5, 7, seed=4), torch.nn.Linear(5, 7))]
    x = np.random.default_rng(0).standard_normal((3, 2, 5)).astype(np.float32)
    for m, tm in cases:
        sd = interop.to_torch_state_dict(m)
        assert all(isinstance(v, torch.Tensor) and v.dtype == torch.float32 for v in sd.values())
        tm.load_state_dict(sd, strict=True)
        xi = x[0] if isinstance(m, (nn.GRUCell, nn.Linear)) else x
        y, ty = m.eval()(xi), tm(torch.from_numpy(xi))
        y, ty = (y[0], ty[0]) if isinstance(y, tuple) else (y, ty)
        np.testing.assert_allclose(y, _np(ty), **TOL)
        next(iter(sd.values())).zero_()  # copies: the rnnfast weights do not move
        assert np.any(next(iter(m.state_dict().values())))


def test_load_torch_state_dict(torch):
    tm = torch.nn.LSTM(3, 4, num_layers=2).double()
    m = nn.LSTM(3, 4, num_layers=2, seed=0)
    missing, unexpected = interop.load_torch_state_dict(m, dict(tm.named_parameters()))  # float64, requires_grad
    assert missing == [] and unexpected == []
    np.testing.assert_allclose(m.weight_hh_l1.data, _np(tm.weight_hh_l1).astype(np.float32))
    interop.load_torch_state_dict(m, {k: _np(v) * 0 for k, v in tm.state_dict().items()})  # numpy works too
    assert not m.weight_ih_l0.data.any()
    before = m.state_dict()
    with pytest.raises(KeyError, match=r"missing keys \['weight_ih_l1', 'weight_hh_l1', 'bias_ih_l1', 'bias_hh_l1'\]"):
        interop.load_torch_state_dict(m, torch.nn.LSTM(3, 4).state_dict())
    with pytest.raises(ValueError, match=r"weight_ih_l0: expected shape \(16, 3\), got \(16, 5\)"):
        interop.load_torch_state_dict(m, torch.nn.LSTM(5, 4, num_layers=2).state_dict())
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(TypeError, match="state_dict: expected a mapping"):
        interop.load_torch_state_dict(m, [1, 2])


# the same training in both frameworks -----------------------------------------------------------
class RnnfastTagger(nn.Module):
    """Embedding -> bidirectional GRU -> Linear, per-timestep cross-entropy with padding."""

    def __init__(self, parts):
        super().__init__()
        self.emb, self.rnn, self.head = parts

    def forward(self, ids):
        y, _ = self.rnn(self.emb(ids))
        return self.head(y)

    def backward(self, g):
        self.emb.backward(self.rnn.backward(self.head.backward(g)))


class RnnfastRegressor(nn.Module):
    """2-layer LSTM -> Linear on the last step, MSE (many-to-one)."""

    def __init__(self, parts):
        super().__init__()
        self.rnn, self.head = parts

    def forward(self, x):
        y, _ = self.rnn(x)
        self._shape = y.shape
        return self.head(y[-1])

    def backward(self, g):
        gy = np.zeros(self._shape, np.float32)
        gy[-1] = self.head.backward(g)
        self.rnn.backward(gy)


def _torch_models(torch, task):
    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(12, 5, padding_idx=0)
            self.rnn = torch.nn.GRU(5, 6, batch_first=True, bidirectional=True)
            self.head = torch.nn.Linear(12, 12)

        def forward(self, ids):
            return self.head(self.rnn(self.emb(ids))[0])

    class Regressor(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(3, 8, num_layers=2)
            self.head = torch.nn.Linear(8, 2)

        def forward(self, x):
            return self.head(self.rnn(x)[0][-1])

    torch.manual_seed(7)
    if task == "tagger":
        tm = Tagger()
        return tm, RnnfastTagger([interop.from_torch(p) for p in (tm.emb, tm.rnn, tm.head)])
    tm = Regressor()
    return tm, RnnfastRegressor([interop.from_torch(p) for p in (tm.rnn, tm.head)])


def _batches(task, steps):
    rng = np.random.default_rng(11)
    out = []
    for _ in range(steps):
        if task == "tagger":
            ids = rng.integers(1, 12, size=(4, 6))
            ids[1, 4:] = 0
            target = np.where(ids == 0, -100, (ids * 5 + 3) % 12)
            out.append((ids, target))
        else:
            x = rng.standard_normal((5, 4, 3)).astype(np.float32)
            out.append((x, np.stack([x.sum((0, 2)), x[-1, :, 0]], 1).astype(np.float32) * 0.3))
    return out


@pytest.mark.parametrize("task", ["tagger", "regressor"])
@pytest.mark.parametrize("opt, kw", [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", dict(lr=0.01))])
def test_training_matches_torch_step_by_step(torch, task, opt, kw):
    tm, m = _torch_models(torch, task)
    names = [n for n, _ in tm.named_parameters()]
    assert names == [n for n, _ in m.named_parameters()]
    topt = getattr(torch.optim, opt)(tm.parameters(), **kw)
    ropt = getattr(optim, opt)(m.parameters(), **kw)
    for step, (x, target) in enumerate(_batches(task, 5)):
        out = m(x)
        tout = tm(torch.from_numpy(x))
        if task == "tagger":
            loss, grad = losses.cross_entropy(out, target, ignore_index=-100)
            tloss = torch.nn.functional.cross_entropy(tout.reshape(-1, 12), torch.from_numpy(target).reshape(-1),
                                                      ignore_index=-100)
        else:
            loss, grad = losses.mse_loss(out, target)
            tloss = torch.nn.functional.mse_loss(tout, torch.from_numpy(target))
        assert loss == pytest.approx(tloss.item(), rel=1e-5), f"step {step}"
        m.zero_grad()
        m.backward(grad)
        ropt.step()
        topt.zero_grad()
        tloss.backward()
        topt.step()
        for (name, p), tp in zip(m.named_parameters(), tm.parameters()):
            np.testing.assert_allclose(p.data, _np(tp), rtol=1e-4, atol=2e-5, err_msg=f"step {step}: {name}")
    # and the trained weights go back into torch unchanged
    tm.load_state_dict(interop.to_torch_state_dict(m))
    assert np.array_equal(_np(tm.head.weight), m.head.weight.data)
