"""SequenceClassifier: finite-difference gradients, pooling over valid steps only, PyTorch parity
(bidirectional LSTM on packed sequences + mean pooling), regression head, save/load, bad input."""
import numpy as np
import pytest

from rnnfast.models import SequenceClassifier
from test_models_common import fd_check

LENS = np.array([6, 3, 1, 5])


def _ids(rng, B=4, T=6, V=11):
    return rng.integers(1, V, (B, T))


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("cell,bi", [("lstm", True), ("gru", False), ("rnn", True)])
def test_gradients_match_finite_differences(pooling, cell, bi):
    rng = np.random.default_rng(2)
    m = SequenceClassifier(3, 5, vocab_size=11, embedding_dim=4, num_layers=2, cell=cell, bidirectional=bi,
                           pooling=pooling, seed=1)
    x, y = _ids(rng), np.array([0, 2, 1, 2])

    def loss():
        return m.loss(m(x, LENS), y)[0]
    m.zero_grad()
    _, g = m.loss(m(x, LENS), y)
    m.backward(g)
    fd_check(m, loss, rng)


def test_numeric_input_gradient_and_regression_head():
    rng = np.random.default_rng(3)
    m = SequenceClassifier(2, 4, input_size=3, task="regression", pooling="mean", bidirectional=True, seed=0)
    x = rng.standard_normal((4, 6, 3)).astype(np.float32)
    t = rng.standard_normal((4, 2)).astype(np.float32)
    m.zero_grad()
    _, g = m.loss(m(x, LENS), t)
    gx = m.backward(g)
    fd_check(m, lambda: m.loss(m(x, LENS), t)[0], rng)
    d = rng.standard_normal(x.shape).astype(np.float32)
    d[1, 3:] = d[2, 1:] = d[0, 6:] = d[3, 5:] = 0  # padding steps carry no gradient either way
    eps = 1e-2
    fd = (m.loss(m(x + eps * d, LENS), t)[0] - m.loss(m(x - eps * d, LENS), t)[0]) / (2 * eps)
    assert abs(fd - float(np.sum(gx * d))) < 2e-3 * np.linalg.norm(gx) + 1e-4
    assert np.all(gx[1, 3:] == 0) and np.all(gx[2, 1:] == 0)


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_padding_content_never_matters(pooling):
    """Whatever sits past a sequence's length (and however long the padding) the outputs agree."""
    rng = np.random.default_rng(4)
    m = SequenceClassifier(3, 5, vocab_size=11, embedding_dim=4, bidirectional=True, pooling=pooling, seed=2)
    x = _ids(rng)
    a = m(x, LENS)
    x2 = np.concatenate([x, _ids(rng, T=3)], axis=1)
    for b, n in enumerate(LENS):
        x2[b, n:] = rng.integers(1, 11, x2.shape[1] - n)
    np.testing.assert_allclose(m(x2, LENS), a, rtol=1e-5, atol=1e-6)
    # and each sequence alone (no batch, no padding) gives the same result
    for b, n in enumerate(LENS):
        np.testing.assert_allclose(m(x[b:b + 1, :n])[0], a[b], rtol=1e-5, atol=1e-6)


def test_last_pooling_is_forward_last_valid_and_backward_first_step():
    rng = np.random.default_rng(5)
    m = SequenceClassifier(3, 5, vocab_size=11, embedding_dim=4, bidirectional=True, pooling="last", seed=3)
    m.eval()
    x = _ids(rng)
    out, _ = m.rnn(m.encoder_input(x), None, LENS)
    expect = np.stack([np.concatenate([out[b, n - 1, :5], out[b, 0, 5:]]) for b, n in enumerate(LENS)])
    got = m.head(expect)
    np.testing.assert_allclose(m(x, LENS), got, rtol=1e-5, atol=1e-6)


def test_parity_with_torch_mean_pooling(torch):
    """Embedding -> bidirectional 2-layer LSTM on a packed batch -> masked mean -> Linear, in PyTorch."""
    rng = np.random.default_rng(6)
    m = SequenceClassifier(3, 5, vocab_size=11, embedding_dim=4, num_layers=2, bidirectional=True,
                           pooling="mean", seed=4)
    x, y = _ids(rng), np.array([0, 2, 1, 2])
    m.zero_grad()
    logits = m(x, LENS)
    loss, g = m.loss(logits, y)
    m.backward(g)

    nn = torch.nn
    emb = nn.Embedding(11, 4, padding_idx=0)
    lstm = nn.LSTM(4, 5, num_layers=2, bidirectional=True, batch_first=True)
    head = nn.Linear(10, 3)
    sd = m.state_dict()
    with torch.no_grad():
        emb.weight.copy_(torch.from_numpy(sd["encoder_input.embedding.weight"]))
        lstm.load_state_dict({k[4:]: torch.from_numpy(v) for k, v in sd.items() if k.startswith("rnn.")})
        head.weight.copy_(torch.from_numpy(sd["head.weight"]))
        head.bias.copy_(torch.from_numpy(sd["head.bias"]))
    e = emb(torch.from_numpy(x))
    packed = nn.utils.rnn.pack_padded_sequence(e, torch.from_numpy(LENS), batch_first=True, enforce_sorted=False)
    out, _ = lstm(packed)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=6)
    pooled = out.sum(1) / torch.from_numpy(LENS)[:, None].float()
    t_logits = head(pooled)
    t_loss = nn.functional.cross_entropy(t_logits, torch.from_numpy(y))
    t_loss.backward()
    np.testing.assert_allclose(logits, t_logits.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert abs(loss - t_loss.item()) < 1e-5
    grads = {"encoder_input.embedding.weight": emb.weight.grad, "head.weight": head.weight.grad,
             "head.bias": head.bias.grad}
    grads.update({"rnn." + k: p.grad for k, p in lstm.named_parameters()})
    for name, p in m.named_parameters():
        np.testing.assert_allclose(p.grad, grads[name].numpy(), rtol=1e-4, atol=1e-6, err_msg=name)


def test_trains_to_separate_a_simple_rule():
    """Class = whether token 3 occurs in the sequence: learnable in a few dozen Adam steps."""
    from rnnfast.optim import Adam
    rng = np.random.default_rng(7)
    x = rng.integers(4, 11, (64, 8))
    lens = rng.integers(2, 9, 64)
    y = rng.integers(0, 2, 64)
    for b in np.flatnonzero(y):
        x[b, rng.integers(0, lens[b])] = 3
    m = SequenceClassifier(2, 16, vocab_size=11, embedding_dim=8, pooling="max", seed=0)
    opt = Adam(m.parameters(), lr=0.03)
    for _ in range(60):
        m.zero_grad()
        m.train_step(x, y, lens)
        opt.step()
    assert (m.predict(x, lens) == y).mean() > 0.95
    p = m.predict_proba(x, lens)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)


def test_save_and_load_round_trip(tmp_path):
    rng = np.random.default_rng(8)
    m = SequenceClassifier(3, 5, vocab_size=11, embedding_dim=4, num_layers=2, cell="gru", pooling="max",
                           max_len=9, seed=5)
    x = _ids(rng)
    m.save(tmp_path / "clf.ckpt")
    m2 = SequenceClassifier.load(tmp_path / "clf.ckpt")
    assert m2.config == m.config
    np.testing.assert_array_equal(m2.predict_proba(x, LENS), m.predict_proba(x, LENS))
    from rnnfast.models import SequenceTagger
    with pytest.raises(ValueError, match="SequenceClassifier"):
        SequenceTagger.load(tmp_path / "clf.ckpt")


def test_bad_input_is_reported():
    m = SequenceClassifier(3, 5, vocab_size=11, embedding_dim=4, max_len=6, seed=0)
    rng = np.random.default_rng(9)
    with pytest.raises(ValueError, match="max_len=6"):
        m(_ids(rng, T=7))
    with pytest.raises(ValueError, match="empty"):
        m(_ids(rng), np.array([6, 0, 2, 2]))
    with pytest.raises(ValueError, match="empty"):
        m(np.zeros((2, 0), np.int64))
    with pytest.raises(ValueError, match="outside the label set"):
        m.loss(m(_ids(rng)), np.array([0, 1, 3, 0]))
    with pytest.raises(ValueError, match="outside the label set"):
        m.loss(m(_ids(rng)), np.array([0, -1, 2, 0]))
    with pytest.raises(TypeError, match="integer token ids"):
        m(rng.standard_normal((2, 3)))
    with pytest.raises(ValueError, match="either vocab_size"):
        SequenceClassifier(3, 5)
    with pytest.raises(ValueError, match="pooling"):
        SequenceClassifier(3, 5, input_size=2, pooling="median")
    num = SequenceClassifier(1, 5, input_size=2, task="regression", seed=0)
    with pytest.raises(ValueError, match=r"\(B, T, 2\)"):
        num(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(RuntimeError, match="backward"):
        num.backward(np.zeros((2, 1), np.float32))
