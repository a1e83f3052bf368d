"""Linear, Embedding, Dropout, LayerNorm, Sequential: finite differences, PyTorch parity, bad input."""
import gzip
import json

import numpy as np
import pytest

from rnnfast.nn import Dropout, Embedding, LayerNorm, Linear, Module, Sequential, WordVectorReport, no_grad
from rnnfast.nn import layers as layers_mod


# finite-difference helpers -----------------------------------------------------------------------
def _loss(module, x, r):
    """A scalar with a generic upstream gradient r: sum(forward(x) * r), computed in float64."""
    with no_grad():  # a probe: no backward follows
        return float(np.sum(np.asarray(module.forward(x), dtype=np.float64) * r))


def check_input_grad(module, x, rng, eps=1e-6, rtol=1e-6, atol=1e-8):
    x = np.asarray(x, dtype=np.float64)
    r = rng.standard_normal(np.shape(module.forward(x)))
    module.zero_grad()
    module.forward(x)
    analytic = module.backward(r)
    numeric = np.zeros_like(x)
    flat = x.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = _loss(module, x, r)
        flat[i] = old - eps
        fm = _loss(module, x, r)
        flat[i] = old
        numeric.reshape(-1)[i] = (fp - fm) / (2 * eps)
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol)


def check_param_grads(module, x, rng, eps=1e-3, rtol=1e-4, atol=1e-6, max_entries=40):
    """Parameters are float32: use the step float32 actually took, f(w + d1) - f(w - d2) / (d1 + d2)."""
    x = np.asarray(x, dtype=np.float64)
    r = rng.standard_normal(np.shape(module.forward(x)))
    module.zero_grad()
    module.forward(x)
    module.backward(r)
    checked = 0
    for name, p in module.named_parameters():
        flat = p.data.reshape(-1)
        idx = rng.choice(flat.size, size=min(flat.size, max_entries), replace=False)
        for i in idx:
            old = flat[i]
            up, down = np.float32(old + eps), np.float32(old - eps)
            flat[i] = up
            fp = _loss(module, x, r)
            flat[i] = down
            fm = _loss(module, x, r)
            flat[i] = old
            numeric = (fp - fm) / (float(up) - float(down))
            np.testing.assert_allclose(p.grad.reshape(-1)[i], numeric, rtol=rtol, atol=atol, err_msg=f"{name}[{i}]")
            checked += 1
    assert checked > 0


# Linear -------------------------------------------------------------------------------------------
def test_linear_finite_differences():
    rng = np.random.default_rng(0)
    lin = Linear(5, 3, seed=1)
    x = rng.standard_normal((2, 4, 5))
    check_input_grad(lin, x, rng)
    check_param_grads(lin, x, rng)


def test_linear_matches_torch(torch):
    rng = np.random.default_rng(1)
    for bias in (True, False):
        lin = Linear(6, 4, bias=bias)
        ref = torch.nn.Linear(6, 4, bias=bias)
        with torch.no_grad():
            ref.weight.copy_(torch.from_numpy(lin.weight.data))
            if bias:
                ref.bias.copy_(torch.from_numpy(lin.bias.data))
        x = rng.standard_normal((3, 2, 6)).astype(np.float32)
        g = rng.standard_normal((3, 2, 4)).astype(np.float32)
        tx = torch.tensor(x, requires_grad=True)
        ty = ref(tx)
        ty.backward(torch.from_numpy(g))
        y = lin(x)
        assert y.dtype == np.float32
        gx = lin.backward(g)
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(lin.weight.grad, ref.weight.grad.numpy(), rtol=1e-5, atol=1e-5)
        if bias:
            np.testing.assert_allclose(lin.bias.grad, ref.bias.grad.numpy(), rtol=1e-5, atol=1e-5)
        assert [n for n, _ in lin.named_parameters()] == [n for n, _ in ref.named_parameters()]


def test_linear_init_like_pytorch_and_reproducible():
    lin = Linear(400, 300, seed=0)
    bound = 1 / np.sqrt(400)
    for p in (lin.weight.data, lin.bias.data):
        assert np.abs(p).max() <= bound
    assert abs(lin.weight.data.std() - bound / np.sqrt(3)) < 0.02 * bound
    np.testing.assert_array_equal(Linear(4, 3, seed=5).weight.data, Linear(4, 3, seed=5).weight.data)
    assert not np.array_equal(Linear(4, 3).weight.data, Linear(4, 3).weight.data)
    assert repr(lin) == "Linear(in_features=400, out_features=300, bias=True)"


def test_linear_accumulates_and_bad_input():
    lin = Linear(3, 2, seed=0)
    x = np.ones((4, 3), np.float32)
    lin(x)
    lin.backward(np.ones((4, 2), np.float32))
    once = lin.weight.grad.copy()
    lin(x)
    lin.backward(np.ones((4, 2), np.float32))
    np.testing.assert_allclose(lin.weight.grad, 2 * once)
    with pytest.raises(ValueError, match="x"):
        lin(np.ones((4, 5), np.float32))
    with pytest.raises(TypeError, match="x"):
        lin(np.ones((4, 3), np.int64))
    lin(x)
    with pytest.raises(ValueError, match="grad_output"):
        lin.backward(np.ones((4, 3), np.float32))
    with pytest.raises(RuntimeError, match="forward"):
        Linear(3, 2).backward(np.ones((4, 2), np.float32))
    lin.eval()
    lin(x)
    with pytest.raises(RuntimeError, match="training"):
        lin.backward(np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match="in_features"):
        Linear(0, 2)
    with pytest.raises(TypeError, match="out_features"):
        Linear(3, 2.5)


# Embedding ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("num", [50, 1000])  # one-hot GEMM path and pairwise-sort path
def test_embedding_backward_matches_add_at(num):
    rng = np.random.default_rng(2)
    emb = Embedding(num, 8, padding_idx=3, seed=0)
    ids = rng.integers(0, num, size=(16, 37))
    ids[0, :20] = 3
    ids[1, :] = 7  # a heavily repeated id
    out = emb(ids)
    np.testing.assert_array_equal(out, emb.weight.data[ids])
    g = rng.standard_normal(out.shape).astype(np.float32)
    emb.weight.grad[...] = 0.5  # backward accumulates on top of what is there
    assert emb.backward(g) is None
    ref = np.full((num, 8), 0.5)
    np.add.at(ref, ids.reshape(-1), g.reshape(-1, 8).astype(np.float64))
    ref[3] = 0.5  # padding row: no gradient
    np.testing.assert_allclose(emb.weight.grad, ref, rtol=1e-5, atol=1e-5)


def test_scatter_add_edge_cases():
    rng = np.random.default_rng(3)
    for ids in (np.arange(500), np.zeros(300, np.int64), rng.integers(0, 400, 1), np.array([], np.int64),
                np.repeat(np.arange(200, 260), rng.integers(1, 9, 60))):
        table = np.zeros((500, 3), np.float32)
        rows = rng.standard_normal((ids.size, 3)).astype(np.float32)
        layers_mod._scatter_add_rows(table, ids, rows)
        ref = np.zeros((500, 3))
        np.add.at(ref, ids, rows.astype(np.float64))
        np.testing.assert_allclose(table, ref, rtol=1e-5, atol=1e-5)


def test_embedding_matches_torch(torch):
    rng = np.random.default_rng(4)
    emb = Embedding(20, 5, padding_idx=0)
    assert np.all(emb.weight.data[0] == 0)
    ref = torch.nn.Embedding(20, 5, padding_idx=0)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(emb.weight.data))
    ids = rng.integers(0, 20, size=(4, 6))
    ids[:, -1] = 0
    g = rng.standard_normal((4, 6, 5)).astype(np.float32)
    out = ref(torch.from_numpy(ids))
    out.backward(torch.from_numpy(g))
    np.testing.assert_array_equal(emb(ids), out.detach().numpy())
    emb.backward(g)
    np.testing.assert_allclose(emb.weight.grad, ref.weight.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_embedding_finite_differences():
    # the loss sum(E[ids] * r) is linear in E, so its gradient is exact under differences too
    rng = np.random.default_rng(5)
    emb = Embedding(6, 3, padding_idx=-1, seed=0)
    assert emb.padding_idx == 5
    ids = np.array([[0, 1, 1], [5, 2, 1]])
    r = rng.standard_normal((2, 3, 3))
    emb(ids)
    emb.backward(r)
    numeric = np.zeros((6, 3))
    for i in range(6):
        for j in range(3):
            old = emb.weight.data[i, j]
            emb.weight.data[i, j] = old + 0.5
            fp = float(np.sum(emb(ids) * r))
            emb.weight.data[i, j] = old - 0.5
            fm = float(np.sum(emb(ids) * r))
            emb.weight.data[i, j] = old
            numeric[i, j] = (fp - fm) / 1.0
    numeric[5] = 0  # padding row never receives gradient
    np.testing.assert_allclose(emb.weight.grad, numeric, rtol=1e-5, atol=1e-5)


def test_embedding_init_standard_normal():
    emb = Embedding(2000, 50, padding_idx=7, seed=0)
    w = np.delete(emb.weight.data, 7, axis=0)
    assert abs(w.mean()) < 0.01 and abs(w.std() - 1) < 0.01
    assert not emb.weight.data[7].any()
    np.testing.assert_array_equal(Embedding(5, 3, seed=1).weight.data, Embedding(5, 3, seed=1).weight.data)
    assert repr(emb) == "Embedding(2000, 50, padding_idx=7)"


def test_embedding_bad_ids():
    emb = Embedding(10, 4)
    with pytest.raises(ValueError, match=r"input.*\[0, 10\).*10"):
        emb(np.array([1, 10]))
    with pytest.raises(ValueError, match="input.*-1"):
        emb(np.array([[-1, 2]]))
    with pytest.raises(TypeError, match="input.*float"):
        emb(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="padding_idx"):
        Embedding(10, 4, padding_idx=10)
    emb(np.array([1, 2]))
    with pytest.raises(ValueError, match="grad_output"):
        emb.backward(np.ones((3, 4), np.float32))
    assert emb(np.zeros((0, 3), np.int64)).shape == (0, 3, 4)


def test_embedding_from_pretrained_and_freeze():
    w = np.arange(12, dtype=np.float64).reshape(4, 3)
    emb = Embedding.from_pretrained(w, freeze=False, padding_idx=1)
    np.testing.assert_array_equal(emb.weight.data, w)  # PyTorch keeps the given padding row
    assert emb.weight.data.dtype == np.float32 and emb.weight.data is not w
    emb(np.array([1, 2]))
    emb.backward(np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(emb.weight.grad[1], 0)
    np.testing.assert_array_equal(emb.weight.grad[2], 1)
    frozen = Embedding.from_pretrained(w)  # frozen by default, as in PyTorch
    frozen(np.array([0, 2]))
    assert frozen.backward(np.ones((2, 3), np.float32)) is None
    assert not frozen.weight.grad.any() and not frozen.weight.requires_grad
    assert "freeze=True" in repr(frozen)
    from rnnfast.optim import AdamW
    opt = AdamW([frozen.weight, emb.weight], lr=0.1)
    opt.step()
    np.testing.assert_array_equal(frozen.weight.data, w)  # weight decay does not touch a frozen table
    with pytest.raises(ValueError, match="embeddings"):
        Embedding.from_pretrained(np.ones(3))


# word vectors -------------------------------------------------------------------------------------
class _VocabWithStoi:
    def __init__(self, tokens):
        self.stoi = {t: i for i, t in enumerate(tokens)}


class _VocabWithEncode:
    def __init__(self, tokens):
        self._t = list(tokens)

    def __iter__(self):
        return iter(self._t)

    def encode(self, tok):
        return [self._t.index(tok)]


@pytest.mark.parametrize("fmt", ["word2vec", "glove", "glove.gz"])
@pytest.mark.parametrize("vocab_kind", ["dict", "stoi", "encode"])
def test_load_word_vectors(tmp_path, fmt, vocab_kind):
    tokens = ["<pad>", "the", "cat", "new york", "zebra"]
    vocab = {"dict": {t: i for i, t in enumerate(tokens)}, "stoi": _VocabWithStoi(tokens),
             "encode": _VocabWithEncode(tokens)}[vocab_kind]
    lines = ["the 0.1 0.2 0.3", "dog 1 2 3", "new york 4 5 6", "cat -1 -2 -3e-1", "the 9 9 9", "<pad> 7 7 7"]
    text = "\n".join(([f"{len(lines)} 3"] if fmt == "word2vec" else []) + lines) + "\n"
    path = tmp_path / ("vec.txt.gz" if fmt.endswith(".gz") else "vec.txt")
    if fmt.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    emb = Embedding(5, 3, padding_idx=0, seed=0)
    before = emb.weight.data.copy()
    version = emb.weight.version
    report = emb.load_word_vectors(path, vocab)
    assert isinstance(report, WordVectorReport)
    assert (report.found, report.total, report.file_words, report.dim) == (3, 4, 6, 3)
    assert report.missing == ["zebra"] and abs(report.coverage - 0.75) < 1e-12
    json.dumps(report.as_dict())
    assert "3 of 4" in str(report)
    w = emb.weight.data
    np.testing.assert_allclose(w[1], [0.1, 0.2, 0.3], rtol=1e-6)  # first occurrence wins
    np.testing.assert_allclose(w[2], [-1, -2, -0.3], rtol=1e-6)
    np.testing.assert_allclose(w[3], [4, 5, 6])
    np.testing.assert_array_equal(w[4], before[4])  # missing word keeps its row
    np.testing.assert_array_equal(w[0], 0)  # padding row untouched
    assert emb.weight.version > version


def test_load_word_vectors_errors(tmp_path):
    emb = Embedding(3, 3, seed=0)
    bad_dim = tmp_path / "a.txt"
    bad_dim.write_text("the 1 2\n")
    with pytest.raises(ValueError, match="dimension 2.*embedding_dim=3"):
        emb.load_word_vectors(bad_dim, {"the": 1})
    bad_header = tmp_path / "b.txt"
    bad_header.write_text("2 50\nthe 1 2 3\n")
    with pytest.raises(ValueError, match="dimension 50"):
        emb.load_word_vectors(bad_header, {"the": 1})
    short = tmp_path / "c.txt"
    short.write_text("the 1 2 3\ncat 1 2\n")
    with pytest.raises(ValueError, match="line 2"):
        emb.load_word_vectors(short, {"the": 1})
    too_wide = tmp_path / "f.txt"
    too_wide.write_text("new york 1 2 3 4\n")  # not a word with spaces: 4 numbers
    with pytest.raises(ValueError, match="dimension 4"):
        emb.load_word_vectors(too_wide, {"the": 1})
    numeric_word = tmp_path / "g.txt"
    numeric_word.write_text("1984 1 2 3\n. . . 4 5 6\n")
    report = emb.load_word_vectors(numeric_word, {"1984": 1, ". . .": 2})
    assert report.found == 2
    np.testing.assert_array_equal(emb.weight.data[2], [4, 5, 6])
    junk = tmp_path / "d.txt"
    junk.write_text("a 1 2 3\nthe 1 2 x\n")
    before = emb.weight.data.copy()
    with pytest.raises(ValueError, match="line 2"):
        emb.load_word_vectors(junk, {"the": 1, "a": 2})
    np.testing.assert_array_equal(emb.weight.data, before)  # nothing half-loaded
    good = tmp_path / "e.txt"
    good.write_text("the 1 2 3\n")
    with pytest.raises(ValueError, match="vocab.*7"):
        emb.load_word_vectors(good, {"the": 7})
    with pytest.raises(TypeError, match="vocab"):
        emb.load_word_vectors(good, ["the"])


# Dropout ------------------------------------------------------------------------------------------
def test_dropout_statistics_and_backward():
    drop = Dropout(0.3, seed=0)
    x = np.ones((200, 500), np.float32)
    y = drop(x)
    kept = y != 0
    assert abs(1 - kept.mean() - 0.3) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    g = np.full_like(x, 2.0)
    gx = drop.backward(g)
    np.testing.assert_array_equal(gx != 0, kept)
    np.testing.assert_allclose(gx[kept], 2 / 0.7, rtol=1e-6)
    assert repr(drop) == "Dropout(p=0.3)"


def test_dropout_seed_reseed_and_state():
    x = np.ones((10, 10), np.float32)
    a, b = Dropout(0.5, seed=7), Dropout(0.5, seed=7)
    np.testing.assert_array_equal(a(x), b(x))
    state = a.get_rng_state()
    json.dumps(state)
    first = a(x)
    a.set_rng_state(state)
    np.testing.assert_array_equal(a(x), first)
    a.seed_dropout(7)
    b.seed_dropout(7)
    np.testing.assert_array_equal(a(x), b(x))
    assert not np.array_equal(Dropout(0.5, seed=1)(x), Dropout(0.5, seed=2)(x))


def test_dropout_eval_edges_and_errors():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    drop = Dropout(0.5, seed=0).eval()
    assert drop(x) is x
    np.testing.assert_array_equal(drop.backward(x), x)
    zero = Dropout(1.0, seed=0)
    assert not zero(x).any() and not zero.backward(np.ones_like(x)).any()
    np.testing.assert_array_equal(Dropout(0.0)(x), x)
    with pytest.raises(ValueError, match="p"):
        Dropout(1.5)
    with pytest.raises(TypeError, match="p"):
        Dropout("0.5")
    with pytest.raises(RuntimeError, match="forward"):
        Dropout(0.5).backward(x)


# LayerNorm ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, affine, bias", [((4,), True, True), ((3, 4), True, True),
                                                 ((4,), False, True), ((4,), True, False)])
def test_layernorm_finite_differences(shape, affine, bias):
    rng = np.random.default_rng(6)
    ln = LayerNorm(shape, elementwise_affine=affine, bias=bias)
    for p in ln.parameters():
        p.data = rng.standard_normal(p.shape)
    x = rng.standard_normal((2,) + shape) * 3 + 1
    check_input_grad(ln, x, rng, rtol=1e-5, atol=1e-7)
    if affine:
        check_param_grads(ln, x, rng)


@pytest.mark.parametrize("shape, affine", [((8,), True), ((3, 4), True), ((8,), False)])
def test_layernorm_matches_torch(torch, shape, affine):
    rng = np.random.default_rng(7)
    ln = LayerNorm(shape, eps=1e-5, elementwise_affine=affine)
    ref = torch.nn.LayerNorm(shape, eps=1e-5, elementwise_affine=affine)
    for (name, p), (tname, tp) in zip(ln.named_parameters(), ref.named_parameters()):
        assert name == tname
        p.data = rng.standard_normal(p.shape)
        with torch.no_grad():
            tp.copy_(torch.from_numpy(p.data))
    x = (rng.standard_normal((5, 2) + shape) * 4 + 10).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    tx = torch.tensor(x, requires_grad=True)
    ty = ref(tx)
    ty.backward(torch.from_numpy(g))
    np.testing.assert_allclose(ln(x), ty.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ln.backward(g), tx.grad.numpy(), rtol=1e-4, atol=1e-5)
    for (_, p), (_, tp) in zip(ln.named_parameters(), ref.named_parameters()):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_layernorm_bad_input():
    ln = LayerNorm(4)
    with pytest.raises(ValueError, match=r"x.*\(\.\.\., 4\)"):
        ln(np.ones((2, 5), np.float32))
    with pytest.raises(ValueError, match="normalized_shape"):
        LayerNorm(0)
    with pytest.raises(ValueError, match="eps"):
        LayerNorm(4, eps=0)
    assert repr(ln) == "LayerNorm((4,), eps=1e-05, elementwise_affine=True)"


# Sequential ---------------------------------------------------------------------------------------
def _mlp(seed=0):
    return Sequential(Linear(5, 7, seed=seed), LayerNorm(7), Dropout(0.0), Linear(7, 3, seed=seed + 1))


def test_sequential_finite_differences_and_structure():
    rng = np.random.default_rng(8)
    seq = _mlp()
    x = rng.standard_normal((4, 5))
    check_input_grad(seq, x, rng, rtol=1e-5, atol=1e-7)
    check_param_grads(seq, x, rng)
    assert len(seq) == 4 and isinstance(seq[1], LayerNorm) and isinstance(seq[-1], Linear)
    assert len(seq[:2]) == 2
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"]
    other = _mlp(seed=5)
    other.load_state_dict(seq.state_dict())
    np.testing.assert_array_equal(other(x), seq(x))


def test_sequential_matches_torch(torch):
    rng = np.random.default_rng(9)
    seq = Sequential(Embedding(11, 6, padding_idx=0), Linear(6, 8), LayerNorm(8), Linear(8, 4))
    ref = torch.nn.Sequential(torch.nn.Embedding(11, 6, padding_idx=0), torch.nn.Linear(6, 8),
                              torch.nn.LayerNorm(8), torch.nn.Linear(8, 4))
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in seq.state_dict().items()})
    ids = rng.integers(0, 11, size=(3, 5))
    g = rng.standard_normal((3, 5, 4)).astype(np.float32)
    out = ref(torch.from_numpy(ids))
    out.backward(torch.from_numpy(g))
    np.testing.assert_allclose(seq(ids), out.detach().numpy(), rtol=1e-4, atol=1e-5)
    assert seq.backward(g) is None
    grads = dict(ref.named_parameters())
    for name, p in seq.named_parameters():
        np.testing.assert_allclose(p.grad, grads[name].grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)


def test_sequential_backward_runs_in_reverse_and_errors():
    calls = []

    class Tag(Module):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def forward(self, x):
            calls.append(("f", self.name))
            return x

        def backward(self, g):
            calls.append(("b", self.name))
            return g

    seq = Sequential(Tag("a"), Tag("b"))
    seq.append(Tag("c"))
    seq.backward(seq(np.ones(2, np.float32)))
    assert calls == [("f", "a"), ("f", "b"), ("f", "c"), ("b", "c"), ("b", "b"), ("b", "a")]
    class NoInputGrad(Tag):  # like an Embedding: ids have no gradient
        def backward(self, g):
            return None

    bad = Sequential(Tag("a"), NoInputGrad("b"))
    bad(np.ones(2, np.float32))
    with pytest.raises(RuntimeError, match="first module"):
        bad.backward(np.ones(2, np.float32))
    with pytest.raises(TypeError, match="module"):
        Sequential(Linear(2, 2), lambda x: x)
