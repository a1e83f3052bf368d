"""The saved-for-backward policy (rnnfast/nn/module.py): contexts, per-thread stacks, in-place
input edits, two threads on one module, pickling. Each test here failed on the code before it."""
import copy
import pickle
import threading

import numpy as np
import pytest

from rnnfast import nn
from rnnfast.models import LanguageModel, Seq2Seq, SequenceClassifier, SequenceTagger

from helpers import randn

RNG = np.random.default_rng(7)


def recurrent(kind, **kw):
    return getattr(nn, kind)(5, 6, seed=1, **kw)


def grads(module):
    return {n: p.grad.copy() for n, p in module.named_parameters()}


def one_step(module, x, g, **kw):
    """Gradients of one forward+backward from zero grads: (input gradient, parameter grads)."""
    module.zero_grad()
    y = module(x, **kw)
    out = y[0] if isinstance(y, tuple) else y
    gx = module.backward(g(out) if callable(g) else g)
    return gx, grads(module)


# in-place edits between forward and backward ------------------------------------------------------
@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("layout", ["time_major", "batch_first", "unbatched"])
def test_editing_the_input_after_forward_leaves_the_gradients_alone(kind, layout):
    m = recurrent(kind, num_layers=2, batch_first=layout == "batch_first")
    x = randn(RNG, 4, 3, 5) if layout != "unbatched" else randn(RNG, 4, 5)
    want_gx, want = one_step(m, x.copy(), np.ones_like)
    m.zero_grad()
    y, _ = m(x)
    x *= 3.0  # the caller reuses its buffer before backward
    gx = m.backward(np.ones_like(y))
    np.testing.assert_array_equal(gx, want_gx)
    for name, g in grads(m).items():
        np.testing.assert_array_equal(g, want[name], err_msg=name)


@pytest.mark.parametrize("make", [lambda: nn.Linear(5, 3, seed=0), lambda: nn.LSTMCell(5, 3, seed=0),
                                  lambda: nn.GRUCell(5, 3, seed=0), lambda: nn.LayerNorm(5)])
def test_editing_the_input_of_a_layer_or_cell_leaves_the_gradients_alone(make):
    m = make()
    x = randn(RNG, 4, 5)
    g = randn(RNG, 4, 5 if isinstance(m, nn.LayerNorm) else 3)
    want_gx, want = one_step(m, x.copy(), g)
    m.zero_grad()
    m(x)
    x[:] = 0.0
    np.testing.assert_array_equal(m.backward(g), want_gx)
    for name, got in grads(m).items():
        np.testing.assert_array_equal(got, want[name], err_msg=name)


# stacks and explicit contexts ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_two_pending_forwards_pair_with_their_own_backward(kind):
    m = recurrent(kind, bidirectional=True)
    xa, xb = randn(RNG, 6, 2, 5), randn(RNG, 3, 4, 5)  # different shapes: a mix-up cannot pass
    ga = lambda y: np.full_like(y, 0.5)  # noqa: E731
    gb = lambda y: np.full_like(y, -2.0)  # noqa: E731
    want_a, grads_a = one_step(m, xa, ga)
    want_b, grads_b = one_step(m, xb, gb)
    m.zero_grad()
    ya, _ = m(xa)
    yb, _ = m(xb)
    assert m.pending() == 2
    np.testing.assert_array_equal(m.backward(gb(yb)), want_b)  # newest first
    np.testing.assert_array_equal(m.backward(ga(ya)), want_a)
    for name, g in grads(m).items():
        np.testing.assert_allclose(g, grads_a[name] + grads_b[name], rtol=1e-6, atol=1e-6, err_msg=name)


def test_explicit_contexts_run_in_any_order_and_only_once():
    m = recurrent("LSTM")
    xa, xb = randn(RNG, 4, 2, 5), randn(RNG, 5, 3, 5)
    want_a, _ = one_step(m, xa, np.ones_like)
    want_b, _ = one_step(m, xb, np.ones_like)
    (ya, _), ca = m.forward_ctx(xa)
    (yb, _), cb = m.forward_ctx(xb)
    assert m.pending() == 0  # explicit contexts are the caller's, not on the stack
    np.testing.assert_array_equal(m.backward_ctx(ca, np.ones_like(ya)), want_a)  # oldest first is fine
    np.testing.assert_array_equal(m.backward_ctx(cb, np.ones_like(yb)), want_b)
    assert cb.grad_hx is not None
    with pytest.raises(RuntimeError, match="already used"):
        m.backward_ctx(ca, np.ones_like(ya))
    with pytest.raises(ValueError, match="belongs to a LSTM"):
        recurrent("LSTM").backward_ctx(recurrent("LSTM").forward_ctx(xa)[1], np.ones_like(ya))
    with pytest.raises(TypeError, match="ctx"):
        m.backward_ctx(None, np.ones_like(ya))


def test_a_refused_gradient_leaves_the_forward_pending():
    m = nn.Linear(3, 2, seed=0)
    x = randn(RNG, 4, 3)
    m(x)
    with pytest.raises(ValueError, match="grad_output"):
        m.backward(np.ones((4, 3), np.float32))
    assert m.pending() == 1
    m.backward(np.ones((4, 2), np.float32))
    assert m.pending() == 0


def test_no_grad_and_eval_keep_nothing_and_leaks_warn():
    m = nn.Linear(3, 2, seed=0)
    with nn.no_grad():
        m(randn(RNG, 2, 3))
    assert m.pending() == 0
    m.eval()(randn(RNG, 2, 3))
    assert m.pending() == 0
    m.train()
    with pytest.warns(RuntimeWarning, match="waiting for their backward"):
        for _ in range(m.max_pending + 1):
            m(randn(RNG, 2, 3))
    m.clear_pending()
    assert m.pending() == 0


def test_switching_mode_drops_pending_forwards():
    m = recurrent("GRU")
    m(randn(RNG, 3, 2, 5))
    m.eval()
    m.train()
    with pytest.raises(RuntimeError, match="no pending forward"):
        m.backward(np.ones((3, 2, 6), np.float32))


# threads -------------------------------------------------------------------------------------------
def _train_in_threads(module, batches, steps):
    """Each thread runs forward+backward ``steps`` times on its own batch; returns each thread's
    last input gradient."""
    out = [None] * len(batches)
    errors = []
    start = threading.Barrier(len(batches))

    def work(i):
        try:
            start.wait()
            for _ in range(steps):
                y = module(batches[i])
                y = y[0] if isinstance(y, tuple) else y
                out[i] = module.backward(np.ones_like(y))
        except Exception as e:  # reported below: a thread's exception must fail the test
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return out


# Sizes big enough that the two threads' gradient updates overlap in time (without the locks
# this test fails: lost updates; with one shared activation slot, wrong input gradients).
@pytest.mark.parametrize("make", [lambda: nn.LSTM(16, 96, num_layers=2, seed=1),
                                  lambda: nn.GRU(16, 96, bidirectional=True, seed=1),
                                  lambda: nn.Sequential(nn.Linear(16, 256, seed=0), nn.LayerNorm(256),
                                                        nn.Linear(256, 256))])
def test_one_module_trains_from_two_threads(make):
    m = make()
    rec = not isinstance(m, nn.Sequential)
    batches = [randn(RNG, 30, 6, 16) if rec else randn(RNG, 300, 16),
               randn(RNG, 17, 9, 16) if rec else randn(RNG, 170, 16)]
    want = [one_step(m, b, np.ones_like) for b in batches]
    m.zero_grad()
    steps = 20
    got = _train_in_threads(m, batches, steps)
    for i in range(2):
        np.testing.assert_array_equal(got[i], want[i][0])
    for name, g in grads(m).items():
        expected = steps * (want[0][1][name] + want[1][1][name])
        # the threads' order of additions varies, so allow float32 rounding of 2*steps sums; a lost
        # update would be off by a whole step's gradient
        np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max(), err_msg=name)


def test_pending_forwards_belong_to_their_thread():
    m = nn.Linear(3, 2, seed=0)
    m(randn(RNG, 2, 3))
    seen = []
    t = threading.Thread(target=lambda: seen.append(m.pending()))
    t.start()
    t.join()
    assert seen == [0] and m.pending() == 1


# copies --------------------------------------------------------------------------------------------
def _models():
    return [recurrent("LSTM", num_layers=2, bidirectional=True), nn.GRUCell(4, 3, seed=0),
            nn.Sequential(nn.Linear(4, 5, seed=0), nn.Dropout(0.2, seed=1), nn.LayerNorm(5)),
            LanguageModel(11, 4, 6, num_layers=2, seed=0),
            SequenceClassifier(3, 6, vocab_size=11, embedding_dim=4, seed=0),
            SequenceTagger(4, 6, vocab_size=11, embedding_dim=4, crf=True, seed=0),
            Seq2Seq(11, 12, 6, embedding_dim=4, attention="additive", bos_id=1, eos_id=2, seed=0)]


def _run(m):
    ids = np.arange(12).reshape(2, 6) % 10 + 1
    if isinstance(m, nn.RNNBase):
        return m(randn(np.random.default_rng(0), 3, 2, 5))[0]
    if isinstance(m, nn.GRUCell):
        return m(randn(np.random.default_rng(0), 2, 4))
    if isinstance(m, nn.Sequential):
        return m(randn(np.random.default_rng(0), 2, 4))
    if isinstance(m, LanguageModel):
        return m(ids)[0]
    if isinstance(m, Seq2Seq):
        return m(ids, ids)
    return m(ids)


@pytest.mark.parametrize("index", range(7))
@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_modules_and_models_copy_with_identical_outputs(index, how):
    m = _models()[index].eval()
    want = _run(m)
    m.train()
    _run(m)  # a pending forward is not part of the copy
    c = pickle.loads(pickle.dumps(m)) if how == "pickle" else copy.deepcopy(m)
    assert c.pending() == 0
    np.testing.assert_array_equal(_run(c.eval()), want)
    p0 = next(iter(c.parameters()))
    assert p0.data is not next(iter(m.parameters())).data  # a real copy, not shared weights


def test_no_grad_in_training_mode_still_draws_dropout():
    m = nn.LSTM(5, 6, num_layers=2, dropout=0.5, seed=0)
    x = randn(RNG, 4, 3, 5)
    m.seed_dropout(3)
    kept = m(x)[0]
    m.clear_pending()
    m.seed_dropout(3)
    with nn.no_grad():
        probe = m(x)[0]
    assert m.pending() == 0
    np.testing.assert_array_equal(probe, kept)  # same masks: no_grad keeps training behaviour
    assert not np.array_equal(m.eval()(x)[0], kept)
