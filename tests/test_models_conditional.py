"""ConditionalGenerator: finite differences (class and feature conditions), generation from the
conditioned state through the streaming path, <eos> handling, save/load, bad input."""
import numpy as np
import pytest

from rnnfast.models import ConditionalGenerator
from rnnfast.text import Vocab
from test_models_common import fd_check

SEQS = [[3, 4, 5], [6], [4, 4, 3, 5]]


@pytest.mark.parametrize("cell,features", [("lstm", False), ("gru", True), ("rnn", False)])
def test_gradients_match_finite_differences(cell, features):
    rng = np.random.default_rng(0)
    kw = dict(condition_size=3) if features else dict(num_conditions=4)
    m = ConditionalGenerator(7, 4, 5, num_layers=2, cell=cell, bos_id=1, eos_id=2, seed=1, **kw)
    cond = rng.standard_normal((3, 3)).astype(np.float32) if features else np.array([0, 3, 1])
    b = m.make_batch(cond, SEQS)

    def loss():
        return m.loss(m(b["cond"], b["ids"], b["lengths"]), b["targets"], b["lengths"])[0]
    m.zero_grad()
    lg = m(b["cond"], b["ids"], b["lengths"])
    _, g = m.loss(lg, b["targets"], b["lengths"])
    g_cond = m.backward(g)
    fd_check(m, loss, rng)
    if features:  # the gradient of the condition vector itself
        d = rng.standard_normal(cond.shape).astype(np.float32)
        eps = 1e-2
        up = m.loss(m(cond + eps * d, b["ids"], b["lengths"]), b["targets"], b["lengths"])[0]
        down = m.loss(m(cond - eps * d, b["ids"], b["lengths"]), b["targets"], b["lengths"])[0]
        assert abs((up - down) / (2 * eps) - float(np.sum(g_cond * d))) < 2e-3 * np.linalg.norm(g_cond) + 1e-4
    else:
        assert g_cond is None


def test_condition_sets_the_initial_state_of_every_layer():
    m = ConditionalGenerator(7, 4, 5, num_conditions=3, num_layers=2, bos_id=1, eos_id=2, seed=2)
    h, c = m.initial_state(np.array([0, 1, 0]))
    assert h.shape == c.shape == (2, 3, 5)
    np.testing.assert_array_equal(h[:, 0], h[:, 2])
    assert not np.allclose(h[:, 0], h[:, 1])
    # the LanguageModel forward from that state is what the model computes
    b = m.make_batch(np.array([0, 1, 0]), SEQS)
    lg, _ = m.lm(b["ids"], (h, c), b["lengths"])
    np.testing.assert_array_equal(m(b["cond"], b["ids"], b["lengths"]), lg)


def _trained():
    """Class 0 -> 3 3 3, class 1 -> 4 5, class 2 -> 6 5 4 3."""
    from rnnfast.optim import Adam
    m = ConditionalGenerator(7, 8, 16, num_conditions=3, bos_id=1, eos_id=2, seed=3)
    targets = {0: [3, 3, 3], 1: [4, 5], 2: [6, 5, 4, 3]}
    opt = Adam(m.parameters(), lr=0.05)
    cond = np.array([0, 1, 2] * 4)
    b = m.make_batch(cond, [targets[int(k)] for k in cond])
    for _ in range(80):
        m.zero_grad()
        m.train_step(b)
        opt.step()
    return m, targets


def test_learns_per_condition_sequences_and_generates_them():
    m, targets = _trained()
    out = m.generate(np.array([0, 1, 2, 1]), greedy=True, max_len=10)
    assert [o.tolist() for o in out] == [targets[0], targets[1], targets[2], targets[1]]
    # sampling with top_k=1 is greedy; low temperature sampling agrees with the argmax
    assert all(np.array_equal(a, b) for a, b in zip(m.generate(np.array([0, 1, 2, 1]), top_k=1, seed=5), out))
    s1 = m.generate(np.array([0, 1, 2]), temperature=0.2, seed=7)
    assert [x.tolist() for x in s1] == [targets[0], targets[1], targets[2]]


def test_sampling_is_reproducible_and_respects_limits():
    m = ConditionalGenerator(9, 4, 6, condition_size=2, bos_id=1, eos_id=2, seed=4)
    cond = np.random.default_rng(0).standard_normal((5, 2)).astype(np.float32)
    a = m.generate(cond, max_len=12, temperature=1.5, seed=11)
    b = m.generate(cond, max_len=12, temperature=1.5, seed=11)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    for seq in a:
        assert len(seq) <= 12 and not set(seq.tolist()) & {0, 1, 2}
    top2 = m.generate(cond, max_len=12, top_k=2, seed=3)
    assert m.training  # the mode is restored
    assert all(len(s) <= 12 for s in top2)


def test_save_load_with_vocab(tmp_path):
    m, _ = _trained()
    voc = Vocab(["<pad>", "<bos>", "<eos>", "a", "b", "c", "d"], specials=["<pad>", "<bos>", "<eos>"], unk_token=None)
    m.set_vocab(voc)
    text = m.generate_text(np.array([2, 0]), greedy=True)
    assert text == [["d", "c", "b", "a"], ["a", "a", "a"]]
    m.save(tmp_path / "cg.ckpt")
    m2 = ConditionalGenerator.load(tmp_path / "cg.ckpt")
    assert m2.generate_text(np.array([2, 0]), greedy=True) == text


def test_bad_input_is_reported():
    m = ConditionalGenerator(7, 4, 5, num_conditions=3, max_len=4, seed=0)
    with pytest.raises(ValueError, match="no <bos>/<eos>"):
        m.generate(np.array([0]))
    with pytest.raises(ValueError, match="no vocabulary"):
        m.generate_text(np.array([0]))
    m = ConditionalGenerator(7, 4, 5, num_conditions=3, max_len=4, bos_id=1, eos_id=2, seed=0)
    with pytest.raises(ValueError, match="outside the label set"):
        m.generate(np.array([3]))
    with pytest.raises(ValueError, match="temperature"):
        m.generate(np.array([0]), temperature=0)
    with pytest.raises(ValueError, match="max_len=4"):
        b = m.make_batch(np.array([0]), [[3, 4, 5, 6, 3]])
        m(b["cond"], b["ids"], b["lengths"])
    with pytest.raises(ValueError, match="either num_conditions"):
        ConditionalGenerator(7, 4, 5)
    with pytest.raises(TypeError, match="class ids"):
        m.generate(np.array([[0.5, 1.0]]))
