"""SequenceTagger and its CRF: brute-force oracles for log Z and Viterbi, float64 finite differences
of the CRF, finite differences of the whole tagger, PyTorch parity of the emissions, padding
ignored in the loss, save/load and bad input."""
import itertools

import numpy as np
import pytest

from rnnfast.models import SequenceTagger
from rnnfast.models.crf import CRF
from test_models_common import fd_check

LENS = np.array([5, 2, 1, 4])


def _crf(K=3, seed=0):
    crf = CRF(K, seed=seed)
    rng = np.random.default_rng(seed + 100)
    for p in crf.parameters():  # larger than the init so the paths differ clearly
        p.data = rng.standard_normal(p.shape)
    return crf


def _brute(crf, e, n):
    """All K**n paths of one sequence: (log Z, best path)."""
    tr, st, en = (p.data.astype(np.float64) for p in (crf.transitions, crf.start_transitions, crf.end_transitions))
    scores = {}
    for path in itertools.product(range(crf.num_tags), repeat=n):
        s = st[path[0]] + en[path[-1]] + sum(e[t, path[t]] for t in range(n))
        s += sum(tr[path[t - 1], path[t]] for t in range(1, n))
        scores[path] = s
    v = np.array(list(scores.values()))
    return np.log(np.exp(v - v.max()).sum()) + v.max(), max(scores, key=scores.get)


def test_crf_forward_algorithm_and_viterbi_match_brute_force():
    rng = np.random.default_rng(1)
    crf = _crf()
    e = rng.standard_normal((4, 5, 3))
    log_z = crf.log_partition(e, LENS)
    paths = crf.decode(e, LENS)
    for b, n in enumerate(LENS):
        bz, bp = _brute(crf, e[b], n)
        assert abs(log_z[b] - bz) < 1e-9
        np.testing.assert_array_equal(paths[b], bp)
    # padding content is never read
    e2 = e.copy()
    for b, n in enumerate(LENS):
        e2[b, n:] = 1e3
    np.testing.assert_allclose(crf.log_partition(e2, LENS), log_z)
    assert all(np.array_equal(a, b) for a, b in zip(crf.decode(e2, LENS), paths))


@pytest.mark.parametrize("reduction", ["mean", "sum", "token_mean"])
def test_crf_nll_gradients_float64_finite_differences(reduction):
    rng = np.random.default_rng(2)
    crf = _crf(K=4, seed=3)
    e = rng.standard_normal((4, 5, 4))
    tags = rng.integers(0, 4, (4, 5))
    tags[1, 2:] = 99  # padding holds anything
    crf.zero_grad()
    loss, g = crf.nll(e, tags, LENS, reduction)
    assert g.dtype == np.float64 and np.all(g[1, 2:] == 0)
    h = 1e-6
    d = rng.standard_normal(e.shape)
    fd = (crf.nll(e + h * d, tags, LENS, reduction)[0] - crf.nll(e - h * d, tags, LENS, reduction)[0]) / (2 * h)
    assert abs(fd - np.sum(g * d)) < 1e-6
    # parameter gradients (float32 storage: a float32-sized step)
    crf2 = _crf(K=4, seed=3)
    crf2.zero_grad()
    crf2.nll(e, tags, LENS, reduction)
    fd_check(crf2, lambda: crf2.nll(e, tags, LENS, reduction)[0], rng, eps=1e-3, rtol=1e-4, atol=1e-6)


def test_crf_loss_is_the_negative_log_probability():
    rng = np.random.default_rng(4)
    crf = _crf()
    e = rng.standard_normal((4, 5, 3))
    tags = rng.integers(0, 3, (4, 5))
    per = crf.log_partition(e, LENS) - crf.score(e, tags, LENS)
    assert np.all(per > 0)
    assert abs(crf.nll(e, tags, LENS, "sum")[0] - per.sum()) < 1e-9


@pytest.mark.parametrize("crf,cell", [(True, "lstm"), (False, "gru"), (True, "rnn")])
def test_tagger_gradients_match_finite_differences(crf, cell):
    rng = np.random.default_rng(5)
    m = SequenceTagger(3, 4, vocab_size=9, embedding_dim=3, num_layers=2, cell=cell, crf=crf, seed=6)
    x = rng.integers(1, 9, (4, 5))
    tags = rng.integers(0, 3, (4, 5))
    m.zero_grad()
    _, g = m.loss(m(x, LENS), tags, LENS)
    m.backward(g)
    fd_check(m, lambda: m.loss(m(x, LENS), tags, LENS)[0], rng)


@pytest.mark.parametrize("crf", [False, True])
def test_padding_is_ignored_in_loss_and_gradient(crf):
    rng = np.random.default_rng(7)
    m = SequenceTagger(3, 4, vocab_size=9, embedding_dim=3, crf=crf, seed=1)
    x = rng.integers(1, 9, (4, 5))
    tags = rng.integers(0, 3, (4, 5))
    l1, g1 = m.loss(m(x, LENS), tags, LENS)
    tags2, x2 = tags.copy(), x.copy()
    for b, n in enumerate(LENS):
        tags2[b, n:] = -7  # not even a valid tag
        x2[b, n:] = rng.integers(1, 9, 5 - n)
    l2, g2 = m.loss(m(x2, LENS), tags2, LENS)
    assert l1 == pytest.approx(l2, rel=1e-6)
    np.testing.assert_allclose(g1, g2, atol=1e-7)
    for b, n in enumerate(LENS):
        assert np.all(g1[b, n:] == 0)


def test_emissions_and_gradients_match_torch(torch):
    """BiLSTM on a packed batch -> Linear, cross-entropy over the valid steps, in PyTorch."""
    rng = np.random.default_rng(8)
    m = SequenceTagger(3, 4, vocab_size=9, embedding_dim=3, num_layers=2, seed=2)
    x = rng.integers(1, 9, (4, 5))
    tags = rng.integers(0, 3, (4, 5))
    m.zero_grad()
    em = m(x, LENS)
    loss, g = m.loss(em, tags, LENS)
    m.backward(g)

    nn = torch.nn
    sd = {k: torch.from_numpy(v) for k, v in m.state_dict().items()}
    emb = nn.Embedding(9, 3, padding_idx=0)
    lstm = nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    lin = nn.Linear(8, 3)
    with torch.no_grad():
        emb.weight.copy_(sd["encoder_input.embedding.weight"])
        lstm.load_state_dict({k[4:]: v for k, v in sd.items() if k.startswith("rnn.")})
        lin.weight.copy_(sd["emit.weight"])
        lin.bias.copy_(sd["emit.bias"])
    packed = nn.utils.rnn.pack_padded_sequence(emb(torch.from_numpy(x)), torch.from_numpy(LENS), batch_first=True,
                                               enforce_sorted=False)
    out, _ = nn.utils.rnn.pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=5)
    t_em = lin(out)
    mask = torch.arange(5)[None, :] < torch.from_numpy(LENS)[:, None]
    t_loss = nn.functional.cross_entropy(t_em[mask], torch.from_numpy(tags)[mask])
    t_loss.backward()
    np.testing.assert_allclose(em, t_em.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert abs(loss - t_loss.item()) < 1e-5
    tg = {"encoder_input.embedding.weight": emb.weight.grad, "emit.weight": lin.weight.grad, "emit.bias": lin.bias.grad}
    tg.update({"rnn." + k: p.grad for k, p in lstm.named_parameters()})
    for name, p in m.named_parameters():
        np.testing.assert_allclose(p.grad, tg[name].numpy(), rtol=1e-4, atol=1e-6, err_msg=name)


def test_crf_tagger_learns_a_transition_rule_and_round_trips(tmp_path):
    """Tag = 1 right after token 2, else 0, and a CRF learns it; then save/load keeps decoding."""
    from rnnfast.optim import Adam
    rng = np.random.default_rng(9)
    x = rng.integers(1, 6, (48, 7))
    lens = rng.integers(2, 8, 48)
    tags = np.zeros_like(x)
    tags[:, 1:] = (x[:, :-1] == 2)
    names = ["O", "AFTER-2"]
    m = SequenceTagger(2, 8, vocab_size=6, embedding_dim=4, crf=True, tag_names=names, seed=0)
    opt = Adam(m.parameters(), lr=0.05)
    for _ in range(40):
        m.zero_grad()
        m.train_step(x, tags, lens)
        opt.step()
    pred = m.decode(x, lens)
    gold = [tags[b, :n] for b, n in enumerate(lens)]
    acc = np.mean(np.concatenate(pred) == np.concatenate(gold))
    assert acc > 0.95
    m.save(tmp_path / "tagger.ckpt")
    m2 = SequenceTagger.load(tmp_path / "tagger.ckpt")
    assert all(np.array_equal(a, b) for a, b in zip(m2.decode(x, lens), pred))
    assert m2.decode_tags([pred[0]])[0] == [names[i] for i in pred[0]]


def test_bad_input_is_reported():
    rng = np.random.default_rng(10)
    m = SequenceTagger(3, 4, vocab_size=9, embedding_dim=3, crf=True, max_len=5, tag_names=["O", "B-X", "I-X"],
                       seed=0)
    x = rng.integers(1, 9, (4, 5))
    em = m(x, LENS)
    with pytest.raises(ValueError, match="outside the label set"):
        m.loss(em, np.full((4, 5), 3), LENS)
    with pytest.raises(ValueError, match="outside the label set"):
        m.encode_tags([["O", "B-Y"]])
    with pytest.raises(ValueError, match="max_len=5"):
        m(rng.integers(1, 9, (2, 6)))
    with pytest.raises(ValueError, match="empty"):
        m(x, np.array([5, 0, 1, 1]))
    with pytest.raises(ValueError, match="tag_names"):
        SequenceTagger(3, 4, input_size=2, tag_names=["O", "O", "B-X"])
    with pytest.raises(ValueError, match="num_tags"):
        CRF(0)
    np.testing.assert_array_equal(m.encode_tags([["O", "I-X", "B-X"]])[0], [0, 2, 1])
