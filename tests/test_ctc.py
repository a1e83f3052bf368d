"""CTC: the loss against torch.nn.functional.ctc_loss (value and gradient w.r.t. raw scores), the
decoders against brute-force enumeration of every alignment, and a toy alignment learnt end to end."""
import itertools
import math

import numpy as np
import pytest

from rnnfast.ctc import GreedyDecoder, PrefixBeamDecoder, greedy_decode, prefix_beam_search
from rnnfast.losses import CTCLoss, ctc_loss


def _torch_ctc(torch, logits, targets, input_lengths, target_lengths, **kw):
    """torch's loss in float64 on log_softmax(logits), and its gradient w.r.t. the raw logits."""
    x = torch.tensor(np.asarray(logits, np.float64), requires_grad=True)
    out = torch.nn.functional.ctc_loss(torch.log_softmax(x, -1), torch.tensor(targets), torch.tensor(input_lengths),
                                       torch.tensor(target_lengths), **kw)
    out.sum().backward()
    return out.detach().numpy(), x.grad.numpy()


def _random_case(rng, T, B, C, S, blank, feasible_limit=False):
    labels = np.array([c for c in range(C) if c != blank])
    targets = rng.choice(labels, (B, max(S, 1)))
    target_lengths = rng.integers(0, S + 1, B)
    input_lengths = rng.integers(1, T + 1, B)
    if feasible_limit:  # input exactly as long as the target needs: one frame per label plus one per repeat
        target_lengths[:] = S
        need = S + np.sum(targets[:, 1:S] == targets[:, :S - 1], axis=1)
        input_lengths = np.minimum(need, T)
    logits = rng.standard_normal((T, B, C)) * 2
    return logits, targets, input_lengths, target_lengths


def _check(torch, logits, targets, input_lengths, target_lengths, **kw):
    loss, grad = ctc_loss(logits, targets, input_lengths, target_lengths, **kw)
    ref_loss, ref_grad = _torch_ctc(torch, logits, targets, input_lengths, target_lengths, **kw)
    assert grad.shape == np.shape(logits)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-4)
    return loss, grad


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("zero_infinity", [False, True])
def test_loss_matches_torch_on_random_cases(torch, reduction, zero_infinity):
    rng = np.random.default_rng(1)
    for _ in range(40):
        T, B, C = int(rng.integers(1, 14)), int(rng.integers(1, 5)), int(rng.integers(2, 7))
        blank = int(rng.integers(0, C))
        case = _random_case(rng, T, B, C, int(rng.integers(0, 7)), blank)
        _check(torch, *case, blank=blank, reduction=reduction, zero_infinity=zero_infinity)


def test_float32_logits_give_float32_gradient_close_to_torch(torch):
    rng = np.random.default_rng(2)
    logits, targets, il, tl = _random_case(rng, 30, 4, 6, 8, 0)
    logits = logits.astype(np.float32)
    loss, grad = _check(torch, logits, targets, il, tl)
    assert grad.dtype == np.float32 and isinstance(loss, float)
    per, _ = ctc_loss(logits, targets, il, tl, reduction="none")
    assert per.dtype == np.float32 and per.shape == (4,)


def test_repeated_labels_and_feasibility_limit(torch):
    rng = np.random.default_rng(3)
    # all-repeated targets need a blank between every pair: length 2S - 1 frames
    targets = np.array([[2, 2, 2, 2], [1, 2, 1, 2], [3, 3, 1, 1]])
    il, tl = np.array([7, 4, 6]), np.array([4, 4, 4])
    loss, _ = _check(torch, rng.standard_normal((7, 3, 4)), targets, il, tl, reduction="none")
    assert np.all(np.isfinite(loss))
    # one frame fewer than needed: impossible, infinite loss (and zero with zero_infinity)
    loss, grad = _check(torch, rng.standard_normal((7, 3, 4)), targets, il - 1, tl, reduction="none")
    assert np.all(np.isinf(loss)) and np.isnan(grad[0]).all()
    loss, grad = _check(torch, rng.standard_normal((7, 3, 4)), targets, il - 1, tl, reduction="none",
                        zero_infinity=True)
    assert np.all(loss == 0) and np.all(grad == 0)
    for _ in range(10):
        _check(torch, *_random_case(rng, 12, 3, 3, 5, 0, feasible_limit=True), reduction="none")


def test_empty_targets_and_concatenated_targets(torch):
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((6, 3, 5))
    padded = np.array([[1, 2, 0], [3, 3, 4], [0, 0, 0]])
    il, tl = np.array([6, 5, 3]), np.array([2, 3, 0])
    loss_p, grad_p = _check(torch, logits, padded, il, tl, reduction="none")
    # the empty target: the probability of all-blank frames
    lp = logits[:3, 2] - np.log(np.exp(logits[:3, 2]).sum(-1, keepdims=True))
    assert math.isclose(loss_p[2], -lp[:, 0].sum(), rel_tol=1e-9)
    flat = np.array([1, 2, 3, 3, 4])
    loss_c, grad_c = _check(torch, logits, flat, il, tl, reduction="none")
    np.testing.assert_array_equal(loss_c, loss_p)
    np.testing.assert_array_equal(grad_c, grad_p)


def test_zero_frames(torch):
    rng = np.random.default_rng(8)
    targets = np.array([[1], [2]])
    for il, tl in (([0, 3], [0, 1]), ([0, 3], [1, 1])):   # no frames: loss 0 for an empty target, else inf
        loss, grad = _check(torch, rng.standard_normal((3, 2, 4)), targets, np.array(il), np.array(tl),
                            reduction="none")
        assert np.all(grad[:, 0] == 0)
    loss, grad = ctc_loss(np.zeros((0, 2, 3)), np.zeros((2, 0), np.int64), np.array([0, 0]), np.array([0, 0]))
    assert loss == 0.0 and grad.shape == (0, 2, 3)


def test_frames_past_input_length_get_no_gradient_and_padding_is_ignored():
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((8, 2, 4))
    targets = np.array([[1, 2, 3], [2, 1, 0]])
    loss, grad = ctc_loss(logits, targets, np.array([8, 5]), np.array([3, 2]), reduction="none")
    assert np.all(grad[5:, 1] == 0) and np.any(grad[:5, 1] != 0)
    other = targets.copy()
    other[1, 2] = 3           # padding past the target length changes nothing
    logits2 = logits.copy()
    logits2[5:, 1] = 99.0     # nor do frames past the input length
    loss2, grad2 = ctc_loss(logits2, other, np.array([8, 5]), np.array([3, 2]), reduction="none")
    np.testing.assert_array_equal(loss, loss2)
    np.testing.assert_array_equal(grad[:5], grad2[:5])


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(6)
    logits = rng.standard_normal((5, 2, 3))
    targets, il, tl = np.array([[1, 1], [2, 1]]), np.array([5, 4]), np.array([2, 2])
    _, grad = ctc_loss(logits, targets, il, tl, reduction="sum")
    eps, num = 1e-6, np.zeros_like(logits)
    for idx in np.ndindex(logits.shape):
        up, down = logits.copy(), logits.copy()
        up[idx] += eps
        down[idx] -= eps
        num[idx] = (ctc_loss(up, targets, il, tl, reduction="sum")[0]
                    - ctc_loss(down, targets, il, tl, reduction="sum")[0]) / (2 * eps)
    np.testing.assert_allclose(grad, num, atol=1e-6)


def test_class_form_scales_per_sample_gradients():
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((6, 2, 4))
    args = (np.array([[1, 2], [3, 0]]), np.array([6, 6]), np.array([2, 1]))
    crit = CTCLoss(blank=0, reduction="none")
    per = crit(logits, *args)
    g = crit.backward(np.array([2.0, 0.0]))
    _, ref = ctc_loss(logits, *args, reduction="none")
    np.testing.assert_allclose(g[:, 0], 2 * ref[:, 0])
    assert np.all(g[:, 1] == 0) and per.shape == (2,)
    with pytest.raises(ValueError, match="grad_loss"):
        crit(logits, *args)
        crit.backward(np.ones(3))


@pytest.mark.parametrize("call, exc, match", [
    (lambda x, t, i, l: ctc_loss(x.astype(np.int64), t, i, l), TypeError, "logits: expected a floating"),
    (lambda x, t, i, l: ctc_loss(x[0], t, i, l), ValueError, r"logits: expected shape \(T, B, C\)"),
    (lambda x, t, i, l: ctc_loss(x, t.astype(float), i, l), TypeError, "targets: expected an integer"),
    (lambda x, t, i, l: ctc_loss(x, t[:1], i, l), ValueError, r"targets: expected shape \(2, S\)"),
    (lambda x, t, i, l: ctc_loss(x, t[None], i, l), ValueError, "targets: expected shape"),
    (lambda x, t, i, l: ctc_loss(x, np.array([[0, 1], [1, 2]]), i, l), ValueError, "other than blank=0"),
    (lambda x, t, i, l: ctc_loss(x, np.array([[4, 1], [1, 2]]), i, l), ValueError, r"labels in \[0, 4\)"),
    (lambda x, t, i, l: ctc_loss(x, t, i, l, blank=1), ValueError, "other than blank=1"),
    (lambda x, t, i, l: ctc_loss(x, t, i, l, blank=4), ValueError, "blank"),
    (lambda x, t, i, l: ctc_loss(x, t, i, l, blank=1.0), TypeError, "blank"),
    (lambda x, t, i, l: ctc_loss(x, t, i.astype(float), l), TypeError, "input_lengths: expected an integer"),
    (lambda x, t, i, l: ctc_loss(x, t, np.array([5, 6]), l), ValueError, r"input_lengths: expected values in \[0, 5\]"),
    (lambda x, t, i, l: ctc_loss(x, t, np.array([5, -1]), l), ValueError, "input_lengths"),
    (lambda x, t, i, l: ctc_loss(x, t, i[:1], l), ValueError, r"input_lengths: expected shape \(2,\)"),
    (lambda x, t, i, l: ctc_loss(x, t, i, np.array([1, 3])), ValueError, r"target_lengths: expected values in \[0, 2\]"),
    (lambda x, t, i, l: ctc_loss(x, t, i, l.astype(np.float32)), TypeError, "target_lengths: expected an integer"),
    (lambda x, t, i, l: ctc_loss(x, np.array([1, 2, 3]), i, l), ValueError, "sum to len"),
    (lambda x, t, i, l: ctc_loss(x, t, i, l, reduction="avg"), ValueError, "reduction"),
    (lambda x, t, i, l: ctc_loss(x, t, i, l, zero_infinity=1), TypeError, "zero_infinity"),
])
def test_bad_input_names_the_argument(call, exc, match):
    x = np.zeros((5, 2, 4), np.float32)
    with pytest.raises(exc, match=match):
        call(x, np.array([[1, 2], [3, 3]]), np.array([5, 4]), np.array([2, 2]))


# decoders ------------------------------------------------------------------------------------------
def _collapse(path, blank):
    out = []
    for i, c in enumerate(path):
        if c != blank and (i == 0 or path[i - 1] != c):
            out.append(c)
    return tuple(out)


def _brute_force(log_probs, blank):
    """log P(labels) for every label sequence: the sum over all C**T alignments."""
    T, C = log_probs.shape
    totals = {}
    for path in itertools.product(range(C), repeat=T):
        lp = sum(log_probs[t, c] for t, c in enumerate(path))
        key = _collapse(path, blank)
        totals[key] = np.logaddexp(totals.get(key, -np.inf), lp)
    return totals


def _log_softmax(x):
    return x - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)) - x.max(-1, keepdims=True)


@pytest.mark.parametrize("seed", range(6))
def test_prefix_beam_search_is_exact_with_a_wide_beam(seed):
    rng = np.random.default_rng(seed)
    T, C = 6, 3
    blank = seed % C
    logits = rng.standard_normal((T, C)) * 1.5
    truth = _brute_force(_log_softmax(logits), blank)
    dec = PrefixBeamDecoder(beam_width=10_000, blank=blank)
    dec.feed(logits)
    beams = dict((tuple(p), s) for p, s in dec.beams())
    assert set(beams) == set(truth)
    for labels, score in truth.items():
        assert math.isclose(beams[labels], score, rel_tol=1e-9, abs_tol=1e-9)
    best = max(truth, key=truth.get)
    assert dec.best() == list(best)
    # the best label sequence is not always the best path's: the test cases include such a split
    assert prefix_beam_search(logits, beam_width=10_000, blank=blank)[0] == list(best)


def test_beam_search_finds_a_sequence_greedy_misses():
    # best path: blank, blank (0.36) -> []; but [1] collects 'a a', 'a -', '- a' = 0.16+0.24+0.24 = 0.64
    lp = np.log(np.array([[0.6, 0.4], [0.6, 0.4]]))
    assert GreedyDecoder().feed(lp) == []
    dec = PrefixBeamDecoder(beam_width=4, scores="log_probs")
    assert dec.feed(lp) == [1]
    assert math.isclose(dec.beams()[0][1], math.log(0.64))


def test_narrow_beam_matches_brute_force_best_on_peaked_frames():
    rng = np.random.default_rng(11)
    for _ in range(5):
        logits = rng.standard_normal((7, 3)) * 4
        truth = _brute_force(_log_softmax(logits), 0)
        assert PrefixBeamDecoder(beam_width=3).feed(logits) == list(max(truth, key=truth.get))


def test_decoders_give_the_same_result_frame_by_frame_in_chunks_and_at_once():
    rng = np.random.default_rng(12)
    logits = rng.standard_normal((40, 5)) * 3
    lp = _log_softmax(logits)
    for make in (lambda: GreedyDecoder(blank=2), lambda: PrefixBeamDecoder(6, blank=2)):
        whole = make().feed(logits)
        one, chunks = make(), make()
        partial = [one.feed(frame) for frame in logits]
        for piece in np.array_split(logits, 7):
            chunks.feed(piece)
        assert partial[-1] == chunks.best() == whole
        assert one.frames_seen == 40
        one.reset()
        assert one.best() == [] and one.frames_seen == 0
    # log-probabilities and raw scores give the same beams
    a = PrefixBeamDecoder(6, blank=2, scores="log_probs")
    a.feed(lp)
    b = PrefixBeamDecoder(6, blank=2)
    b.feed(logits)
    assert [p for p, _ in a.beams()] == [p for p, _ in b.beams()]
    np.testing.assert_allclose([s for _, s in a.beams()], [s for _, s in b.beams()], rtol=1e-12)


def test_greedy_collapses_repeats_and_drops_blanks():
    ids = [0, 1, 1, 0, 1, 2, 2, 0, 0, 3]
    frames = np.eye(4)[ids]
    assert GreedyDecoder().feed(frames) == [1, 1, 2, 3]
    assert GreedyDecoder(blank=1).feed(frames) == [0, 0, 2, 0, 3]   # a blank separates the two 0s
    x = np.stack([frames, np.eye(4)[[0] * 10]], axis=1)
    assert greedy_decode(x, np.array([10, 0])) == [[1, 1, 2, 3], []]
    assert greedy_decode(x, np.array([4, 10])) == [[1], []]


def test_top_k_prunes_classes():
    rng = np.random.default_rng(13)
    logits = rng.standard_normal((20, 8)) * 3
    assert PrefixBeamDecoder(4, top_k=8).feed(logits) == PrefixBeamDecoder(4).feed(logits)
    top2 = np.argsort(-logits, axis=1)[:, :2]
    allowed = set(top2.ravel().tolist())
    dec = PrefixBeamDecoder(50, top_k=2)
    dec.feed(logits)
    used = {c for labels, _ in dec.beams() for c in labels}
    assert used and used <= allowed and len(dec.beams()) > 1
    # a class outside every frame's top 2 never appears, though the full search may use it
    rare = np.zeros((20, 8))
    rare[:, 0], rare[:, 1], rare[:, 7] = 3.0, 2.9, 2.8
    wide, narrow = PrefixBeamDecoder(50), PrefixBeamDecoder(50, top_k=2)
    wide.feed(rare)
    narrow.feed(rare)
    assert any(7 in labels for labels, _ in wide.beams())
    assert not any(7 in labels for labels, _ in narrow.beams())


@pytest.mark.parametrize("make, frames, exc, match", [
    (lambda: GreedyDecoder(), np.zeros((2, 3), np.int64), TypeError, "frames: expected a floating"),
    (lambda: GreedyDecoder(), np.zeros((2, 3, 1)), ValueError, r"frames: expected shape \(C,\)"),
    (lambda: GreedyDecoder(blank=3), np.zeros(3), ValueError, "blank"),
    (lambda: GreedyDecoder(num_classes=4), np.zeros(3), ValueError, "expected 4 classes"),
    (lambda: PrefixBeamDecoder(beam_width=0), None, ValueError, "beam_width"),
    (lambda: PrefixBeamDecoder(scores="probs"), None, ValueError, "scores"),
    (lambda: PrefixBeamDecoder(top_k=0), None, ValueError, "top_k"),
    (lambda: PrefixBeamDecoder(blank=4, num_classes=4), None, ValueError, "blank"),
])
def test_decoder_bad_input(make, frames, exc, match):
    with pytest.raises(exc, match=match):
        make().feed(frames)


def test_decoder_remembers_the_class_count():
    dec = PrefixBeamDecoder()
    dec.feed(np.zeros(3))
    with pytest.raises(ValueError, match="expected 3 classes"):
        dec.feed(np.zeros((2, 4)))


# end to end -----------------------------------------------------------------------------------------
def test_lstm_learns_a_toy_alignment_with_ctc():
    """Inputs: a one-hot symbol held for 2-4 frames, separated by silence; the model must emit the
    symbol sequence without being told where the symbols are."""
    from rnnfast.nn import LSTM, Linear
    from rnnfast.optim import Adam

    rng = np.random.default_rng(0)
    num_symbols, B, T = 3, 16, 24

    def batch():
        x = np.zeros((T, B, num_symbols + 1), np.float32)
        x[:, :, 0] = 1.0
        targets = np.zeros((B, 4), np.int64)
        tl = rng.integers(1, 5, B)
        for b in range(B):
            t = int(rng.integers(0, 2))
            for s in range(tl[b]):
                sym = int(rng.integers(1, num_symbols + 1))
                targets[b, s] = sym
                hold = int(rng.integers(2, 4))
                x[t:t + hold, b] = np.eye(num_symbols + 1)[sym]
                t += hold + 1
        return x, targets, tl

    lstm, head = LSTM(num_symbols + 1, 24, seed=1), Linear(24, num_symbols + 1, seed=2)
    opt = Adam(lstm.parameters() + head.parameters(), lr=0.03)
    lengths = np.full(B, T)
    losses = []
    for _ in range(150):
        x, targets, tl = batch()
        h, _ = lstm(x)
        logits = head(h)
        loss, grad = ctc_loss(logits, targets, lengths, tl)
        opt.zero_grad()
        lstm.backward(head.backward(grad))
        opt.step()
        losses.append(loss)
    assert np.mean(losses[-10:]) < 0.2 * np.mean(losses[:10])
    lstm.eval()
    head.eval()
    x, targets, tl = batch()
    h, _ = lstm(x)
    decoded = greedy_decode(head(h))
    correct = sum(decoded[b] == list(targets[b, :tl[b]]) for b in range(B))
    assert correct >= B - 2, (decoded, targets, tl)
