"""Seq2Seq and Attention: PyTorch parity of the attention step, finite differences, the step-by-step
(scheduled sampling) path against the whole-sequence path, greedy/beam decoding against brute
force, <bos>/<eos> handling, save/load with vocabularies, bad input."""
import itertools

import numpy as np
import pytest

from rnnfast.models import Attention, Seq2Seq
from rnnfast.text import Vocab
from test_models_common import fd_check

SRC = [[3, 4, 5, 6], [6, 3], [5]]
TGT = [[3, 4], [5, 5, 3], []]


def _model(**kw):
    args = dict(embedding_dim=4, num_layers=2, bos_id=1, eos_id=2, seed=0)
    args.update(kw)
    return Seq2Seq(7, 6, 5, **args)


def _rng_states(model):
    return [(m, m.get_rng_state()) for m in model.modules() if callable(getattr(m, "get_rng_state", None))]


def _restore(states):
    for m, s in states:
        m.set_rng_state(s)


# attention -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["additive", "multiplicative"])
def test_attention_step_matches_torch(torch, kind):
    """A decoding step (Tq = 1) and a whole target (Tq = 3) over a padded source, with gradients."""
    rng = np.random.default_rng(0)
    att = Attention(4, 6, kind, attention_size=5, seed=1)
    keys = rng.standard_normal((3, 5, 6)).astype(np.float32)
    lens = np.array([5, 2, 3])
    for tq in (1, 3):
        q = rng.standard_normal((3, tq, 4)).astype(np.float32)
        gc = rng.standard_normal((3, tq, 6)).astype(np.float32)
        att.zero_grad()
        mem = att.encode(keys, lens)
        ctx, w = att(q, mem)
        gq = att.backward(gc)
        gk = att.backward_memory(mem)

        tp = {n: torch.tensor(p.data, requires_grad=True) for n, p in att.named_parameters()}
        tq_, tk = torch.tensor(q, requires_grad=True), torch.tensor(keys, requires_grad=True)
        if kind == "additive":
            u = torch.tanh((tq_ @ tp["query_proj"].T)[:, :, None] + (tk @ tp["key_proj"].T + tp["key_bias"])[:, None])
            scores = u @ tp["v"]
        else:
            scores = tq_ @ (tk @ tp["weight"].T).transpose(1, 2)
        mask = torch.arange(5)[None, None, :] < torch.from_numpy(lens)[:, None, None]
        t_w = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=2)
        t_ctx = t_w @ tk
        (t_ctx * torch.from_numpy(gc)).sum().backward()
        np.testing.assert_allclose(ctx, t_ctx.detach().numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(w, t_w.detach().numpy(), rtol=1e-5, atol=1e-6)
        assert np.all(w[1, :, 2:] == 0) and np.all(w[2, :, 3:] == 0)
        np.testing.assert_allclose(gq, tq_.grad.numpy(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(gk, tk.grad.numpy(), rtol=1e-4, atol=1e-6)
        for n, p in att.named_parameters():
            np.testing.assert_allclose(p.grad, tp[n].grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=n)


def test_attention_steps_accumulate_like_one_call():
    """Several single-step forwards then their backwards (newest first) equal one Tq=3 call."""
    rng = np.random.default_rng(1)
    att = Attention(4, 6, "additive", seed=2)
    keys = rng.standard_normal((2, 4, 6)).astype(np.float32)
    q = rng.standard_normal((2, 3, 4)).astype(np.float32)
    gc = rng.standard_normal((2, 3, 6)).astype(np.float32)
    mem = att.encode(keys, np.array([4, 2]))
    att(q, mem)
    gq = att.backward(gc)
    gk = att.backward_memory(mem)
    whole = {n: p.grad.copy() for n, p in att.named_parameters()}
    att.zero_grad()
    mem = att.encode(keys, np.array([4, 2]))
    for t in range(3):
        att(q[:, t:t + 1], mem)
    gqs = [att.backward(gc[:, t:t + 1]) for t in reversed(range(3))][::-1]
    np.testing.assert_allclose(np.concatenate(gqs, axis=1), gq, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(att.backward_memory(mem), gk, rtol=1e-5, atol=1e-6)
    for n, p in att.named_parameters():
        np.testing.assert_allclose(p.grad, whole[n], rtol=1e-5, atol=1e-6)


# gradients -----------------------------------------------------------------------------------
@pytest.mark.parametrize("cell,bi,attention", [("lstm", True, "additive"), ("gru", False, "multiplicative"),
                                               ("rnn", False, None), ("lstm", False, None)])
def test_gradients_match_finite_differences(cell, bi, attention):
    rng = np.random.default_rng(3)
    m = _model(cell=cell, bidirectional_encoder=bi, attention=attention)
    b = m.make_batch(SRC, TGT)

    def loss():
        lg = m(b["src"], b["tgt_in"], b["src_lengths"], b["tgt_lengths"])
        return m.loss(lg, b["tgt_out"], b["tgt_lengths"])[0]
    m.zero_grad()
    m.train_step(b)
    fd_check(m, loss, rng)


@pytest.mark.parametrize("cell,attention", [("lstm", "additive"), ("gru", None), ("rnn", "multiplicative")])
def test_scheduled_sampling_steps_equal_the_whole_sequence_on_the_inputs_fed(cell, attention):
    """With teacher forcing < 1 the decoder runs step by step on cells; given the inputs it
    actually fed, the whole-sequence kernel path gives the same logits and gradients."""
    m = _model(cell=cell, attention=attention, bidirectional_encoder=True, teacher_forcing=0.4)
    b = m.make_batch(SRC, TGT)
    m.zero_grad()
    logits = m(b["src"], b["tgt_in"], b["src_lengths"], b["tgt_lengths"])
    fed = m.last_decoder_inputs.copy()
    loss, g = m.loss(logits, b["tgt_out"], b["tgt_lengths"])
    m.backward(g)
    assert not np.array_equal(fed, b["tgt_in"])  # some predictions were fed back
    np.testing.assert_array_equal(fed[:, 0], 1)
    steps = {n: p.grad.copy() for n, p in m.named_parameters()}
    m.teacher_forcing = 1.0
    m.zero_grad()
    whole = m(b["src"], fed, b["src_lengths"], b["tgt_lengths"])
    valid = np.arange(logits.shape[1])[None, :] < b["tgt_lengths"][:, None]  # padding steps differ, unused
    np.testing.assert_allclose(logits[valid], whole[valid], rtol=1e-5, atol=1e-6)
    m.backward(m.loss(whole, b["tgt_out"], b["tgt_lengths"])[1])
    for n, p in m.named_parameters():
        np.testing.assert_allclose(steps[n], p.grad, rtol=1e-4, atol=1e-6, err_msg=n)


def test_scheduled_sampling_with_dropout_gradients_match_finite_differences():
    """Step mode with between-layer and output dropout: the same coins and masks for every
    evaluation (restored generator states), central differences agree."""
    rng = np.random.default_rng(4)
    m = _model(cell="lstm", attention="additive", dropout=0.3, teacher_forcing=0.5)
    b = m.make_batch(SRC, TGT)
    states = _rng_states(m)

    def loss():
        _restore(states)
        lg = m(b["src"], b["tgt_in"], b["src_lengths"], b["tgt_lengths"])
        return m.loss(lg, b["tgt_out"], b["tgt_lengths"])[0]
    m.zero_grad()
    _restore(states)
    m.train_step(b)
    fd_check(m, loss, rng, eps=3e-3, rtol=3e-3, atol=3e-4)


# decoding ------------------------------------------------------------------------------------
def _trained_reverser(steps=150):
    """A small model that learned to reverse sequences of the tokens 3..6."""
    from rnnfast.optim import Adam
    rng = np.random.default_rng(5)
    m = Seq2Seq(7, 7, 24, embedding_dim=8, attention="multiplicative", bos_id=1, eos_id=2, seed=1)
    opt = Adam(m.parameters(), lr=0.02)
    for _ in range(steps):
        src = [list(rng.integers(3, 7, rng.integers(1, 5))) for _ in range(32)]
        m.zero_grad()
        m.train_step(m.make_batch(src, [s[::-1] for s in src]))
        opt.step()
    return m


@pytest.fixture(scope="module")
def reverser():
    return _trained_reverser()


def test_learns_to_reverse_and_decodes_exactly(reverser):
    from rnnfast.metrics import exact_match, token_error_rate
    rng = np.random.default_rng(6)
    src = [list(rng.integers(3, 7, rng.integers(1, 5))) for _ in range(40)]
    b = reverser.make_batch(src, src)
    greedy = reverser.greedy_decode(b["src"], b["src_lengths"])
    ref = [s[::-1] for s in src]
    assert exact_match(greedy, ref) > 0.8
    assert token_error_rate(greedy, ref) < 0.1
    beam = reverser.beam_search(b["src"], b["src_lengths"], beam_size=4)
    assert exact_match(beam, ref) >= exact_match(greedy, ref) - 0.05
    for seq in greedy + beam:
        assert not set(seq.tolist()) & {0, 1, 2}  # never <pad>, <bos>, <eos>


def test_greedy_equals_beam_of_one_and_the_teacher_forced_argmax(reverser):
    rng = np.random.default_rng(7)
    src = [list(rng.integers(3, 7, rng.integers(1, 5))) for _ in range(12)]
    b = reverser.make_batch(src, src)
    greedy = reverser.greedy_decode(b["src"], b["src_lengths"], max_len=6)
    beam1 = reverser.beam_search(b["src"], b["src_lengths"], beam_size=1, max_len=6)
    assert all(np.array_equal(a, c) for a, c in zip(greedy, beam1))
    # feeding <bos> + the greedy output back teacher-forced, the argmax reproduces it then <eos>
    reverser.eval()
    for i, y in enumerate(greedy):
        tb = reverser.make_batch([src[i]], [y])
        lg = reverser(tb["src"], tb["tgt_in"], tb["src_lengths"])[0]
        lg[:, [0, 1]] = -np.inf
        expect = list(y) + ([2] if len(y) < 6 else [])
        assert lg.argmax(axis=1)[:len(expect)].tolist() == expect
    reverser.train()


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_search_finds_the_exhaustive_optimum(alpha):
    """Vocabulary <pad> <bos> <eos> 3 4, at most 3 tokens: a beam of 8 holds every prefix, so it
    must return the best of all 15 candidate outputs (ended by <eos> or cut off at max_len)."""
    m = Seq2Seq(6, 5, 6, embedding_dim=3, attention="additive", bos_id=1, eos_id=2, seed=3)
    src = np.array([[3, 4, 5]])
    m.eval()
    best, best_seq = -np.inf, None
    for n in range(0, 4):
        for y in itertools.product([3, 4], repeat=n):
            tb = m.make_batch([[3, 4, 5]], [list(y)])
            lg = m(tb["src"], tb["tgt_in"])[0].astype(np.float64)[:, 2:]  # <pad>, <bos> are never produced
            lp = np.full((lg.shape[0], 5), -np.inf)
            lp[:, 2:] = lg - np.log(np.exp(lg).sum(axis=1, keepdims=True))
            if n < 3:  # ends with <eos>
                s = sum(lp[t, y[t]] for t in range(n)) + lp[n, 2]
                s /= (n + 1) ** alpha
            else:  # cut off at max_len
                s = sum(lp[t, y[t]] for t in range(n)) / n ** alpha
            if s > best:
                best, best_seq = s, list(y)
    m.train()
    seqs, scores = m.beam_search(src, beam_size=8, max_len=3, length_penalty=alpha, return_scores=True)
    assert seqs[0].tolist() == best_seq
    assert scores[0] == pytest.approx(best, rel=1e-5)


def test_save_load_with_vocabs_and_translate(tmp_path, reverser):
    itos = ["<pad>", "<bos>", "<eos>", "a", "b", "c", "d"]
    voc = Vocab(itos, specials=["<pad>", "<bos>", "<eos>"], unk_token=None)
    reverser.set_vocabs(voc, voc)
    out = reverser.translate([["a", "b", "c"], ["d"]], beam_size=3)
    reverser.save(tmp_path / "s2s.ckpt")
    m2 = Seq2Seq.load(tmp_path / "s2s.ckpt")
    assert m2.config == reverser.config
    assert m2.translate([["a", "b", "c"], ["d"]], beam_size=3) == out
    assert out[1] == ["d"]


def test_bad_input_is_reported():
    m = Seq2Seq(7, 6, 5, max_src_len=4, seed=0)
    src = np.array([[3, 4, 5]])
    with pytest.raises(ValueError, match="no <bos>/<eos>"):
        m.greedy_decode(src)
    with pytest.raises(ValueError, match="no <bos>/<eos>"):
        m.make_batch([[3]], [[4]])
    with pytest.raises(ValueError, match="no vocabulary"):
        m.translate([["a"]])
    m = _model(max_src_len=4)
    with pytest.raises(ValueError, match="beam_size"):
        m.beam_search(src, beam_size=0)
    with pytest.raises(ValueError, match="beam_size"):
        m.decode(src, beam_size=-1)
    with pytest.raises(ValueError, match="max_len=4"):
        m.greedy_decode(np.array([[3, 4, 5, 6, 3]]))
    with pytest.raises(ValueError, match="empty"):
        m.make_batch([[3], []], [[4], [4]])
    with pytest.raises(ValueError, match="empty"):
        m.greedy_decode(src, np.array([0]))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        m.greedy_decode(np.array([[3, 9]]))
    b = m.make_batch([[3]], [[4, 5]])
    lg = m(b["src"], b["tgt_in"], b["src_lengths"], b["tgt_lengths"])
    with pytest.raises(ValueError, match="outside the target vocabulary"):
        m.loss(lg, np.array([[4, 8, 2]]), b["tgt_lengths"])
    with pytest.raises(ValueError, match="teacher_forcing"):
        m.teacher_forcing = 1.5
    with pytest.raises(ValueError, match="attention"):
        _model(attention="dot-product")
