"""LanguageModel: finite-difference gradients, reproducible generation, top-k, TBPTT state carry-over."""
import numpy as np
import pytest

from rnnfast.models import LanguageModel

V, E, H = 7, 5, 6


def _loss(model, ids, state, r, s):
    """sum(logits * r) + sum(h_n * s): a scalar touching every output, in float64."""
    logits, new = model(ids, state)
    h = new[0] if isinstance(new, tuple) else new
    return float(np.sum(logits.astype(np.float64) * r) + np.sum(h.astype(np.float64) * s))


@pytest.mark.parametrize("cell,tie", [("lstm", False), ("gru", False), ("rnn", False), ("lstm", True)])
def test_gradients_match_finite_differences(cell, tie):
    rng = np.random.default_rng(1)
    emb = H if tie else E
    model = LanguageModel(V, emb, H, num_layers=2, cell=cell, tie_weights=tie, seed=3)
    ids = rng.integers(0, V, (2, 4))
    state = model.zero_state(2)
    if isinstance(state, tuple):
        state = tuple((rng.standard_normal(x.shape) * 0.5).astype(np.float32) for x in state)
    else:
        state = (rng.standard_normal(state.shape) * 0.5).astype(np.float32)
    r = rng.standard_normal((2, 4, V))
    s = rng.standard_normal((2, 2, H))

    model.zero_grad()
    logits, new = model(ids, state)
    grad_state = (s.astype(np.float32), None) if cell == "lstm" else s.astype(np.float32)
    assert model.backward(r.astype(np.float32), grad_state) is None
    analytic = {name: p.grad.copy() for name, p in model.named_parameters()}
    if tie:
        assert "decoder.weight" not in analytic  # one shared parameter
        assert model.decoder.weight is model.embedding.weight

    eps = 1e-2
    for name, p in model.named_parameters():
        d = rng.standard_normal(p.shape)
        d /= np.linalg.norm(d)
        orig = p.data.copy()
        p.data = orig + eps * d
        up = _loss(model, ids, state, r, s)
        p.data = orig - eps * d
        down = _loss(model, ids, state, r, s)
        p.data = orig
        fd = (up - down) / (2 * eps)
        an = float(np.sum(analytic[name] * d))
        # float32 forward: the difference quotient is good to ~1e-5; a 5% gradient error shows
        assert abs(fd - an) <= 1e-3 * np.linalg.norm(analytic[name]) + 1e-4, (name, fd, an)

    # gradient of the initial hidden state (the part TBPTT would pass further back)
    model.zero_grad()
    model(ids, state)
    model.backward(r.astype(np.float32), grad_state)
    gh = model.grad_state[0] if cell == "lstm" else model.grad_state
    h0 = state[0] if cell == "lstm" else state
    d = rng.standard_normal(h0.shape).astype(np.float32)
    d /= np.linalg.norm(d)

    def with_h0(h):
        return (h, state[1]) if cell == "lstm" else h
    fd = (_loss(model, ids, with_h0(h0 + eps * d), r, s) - _loss(model, ids, with_h0(h0 - eps * d), r, s)) / (2 * eps)
    assert abs(fd - float(np.sum(gh * d))) <= 1e-3 * np.linalg.norm(gh) + 1e-4


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_tbptt_two_halves_with_carried_state_equal_the_whole(cell):
    rng = np.random.default_rng(0)
    model = LanguageModel(11, 8, 16, num_layers=2, cell=cell, seed=0).eval()
    ids = rng.integers(0, 11, (3, 20))
    whole, s_whole = model(ids)
    first, s1 = model(ids[:, :10])
    second, s2 = model(ids[:, 10:], s1)  # the state is a plain array: no detaching needed
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, rtol=1e-5, atol=1e-6)
    for a, b in zip(s2 if isinstance(s2, tuple) else (s2,), s_whole if isinstance(s_whole, tuple) else (s_whole,)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # without the carried state the second half is different (the test can fail)
    fresh, _ = model(ids[:, 10:])
    assert not np.allclose(fresh, second, atol=1e-4)


def test_generate_is_reproducible_from_a_seed():
    model = LanguageModel(13, 8, 16, num_layers=2, seed=5)
    a = model.generate([1, 2, 3], 60, temperature=1.0, seed=42)
    b = model.generate([1, 2, 3], 60, temperature=1.0, seed=42)
    c = model.generate([1, 2, 3], 60, temperature=1.0, seed=43)
    assert a.dtype == np.int64 and a.shape == (60,)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert model.training  # the mode is restored
    seen = []
    d = model.generate([1, 2, 3], 60, temperature=1.0, seed=42, stream_callback=seen.append)
    np.testing.assert_array_equal(d, a)
    assert seen == a.tolist()


def _next_logits(model, prefix):
    """Logits for the token after ``prefix``, from the whole-sequence (training-path) forward."""
    logits, _ = model(np.asarray(prefix)[None, :])
    return logits[0, -1]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_generate_respects_top_k(cell):
    model = LanguageModel(17, 8, 16, num_layers=2, cell=cell, seed=2).eval()
    prime = [3, 1, 4]
    greedy = model.generate(prime, 12, top_k=1, seed=0)
    seq = list(prime)
    for tok in greedy:  # top_k=1 is greedy decoding
        assert tok == int(np.argmax(_next_logits(model, seq)))
        seq.append(int(tok))
    sampled = model.generate(prime, 25, temperature=3.0, top_k=3, seed=1)
    seq = list(prime)
    for tok in sampled:  # every draw is among the 3 most likely, even at a high temperature
        top3 = np.argsort(_next_logits(model, seq))[-3:]
        assert tok in top3
        seq.append(int(tok))
    assert len(set(sampled.tolist())) > 1  # and it does sample, not just argmax


def test_generate_rejects_bad_arguments():
    model = LanguageModel(5, 4, 4, num_layers=1, seed=0)
    with pytest.raises(ValueError, match="temperature"):
        model.generate([1], 3, temperature=0)
    with pytest.raises(ValueError, match="temperature"):
        model.generate([1], 3, temperature=-1.0)
    with pytest.raises(ValueError, match="prime_ids"):
        model.generate([], 3)
    with pytest.raises(ValueError, match="prime_ids"):
        model.generate([9], 3)
    with pytest.raises(ValueError, match="top_k"):
        model.generate([1], 3, top_k=0)
    with pytest.raises(ValueError, match="tie_weights"):
        LanguageModel(5, 4, 6, tie_weights=True)
    with pytest.raises(ValueError, match="cell"):
        LanguageModel(5, 4, 6, cell="transformer")


def test_dropout_masks_follow_the_rng_state():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 9, (2, 6))
    model = LanguageModel(9, 4, 8, num_layers=2, dropout=0.5, seed=0)
    saved = model.get_rng_state()
    a, _ = model(ids)
    b, _ = model(ids)
    assert not np.allclose(a, b)  # fresh masks each forward
    model.set_rng_state(saved)
    c, _ = model(ids)
    np.testing.assert_array_equal(a, c)  # the same state replays the same masks
    model.eval()
    e1, _ = model(ids)
    e2, _ = model(ids)
    np.testing.assert_array_equal(e1, e2)  # no dropout in eval mode
