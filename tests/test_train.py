"""Trainer: early stopping, divergence guard, checkpoints, exact resume, history, budgets."""
import math
import os
import signal
import time

import numpy as np
import pytest

from rnnfast.checkpoint import load_checkpoint
from rnnfast.data import LMStream, batches
from rnnfast.losses import cross_entropy, mse_loss
from rnnfast.models import LanguageModel
from rnnfast.nn import Linear
from rnnfast.optim import SGD, Adam, StepLR
from rnnfast.train import Trainer, TrainingDiverged, TrainingInterrupted


# a tiny regression task ------------------------------------------------------------------------
def _regression(seed=0, n=64):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3)).astype(np.float32)
    y = (X @ np.array([[1.0], [-2.0], [0.5]], np.float32)).astype(np.float32)
    return X, y


def _mse_step(model, batch, state=None):
    X, y = batch
    loss, grad = mse_loss(model(X), y)
    model.backward(grad)
    return loss, len(X)


def _snapshot(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def _same(a, b):
    return all(np.array_equal(a[k], b[k]) for k in a)


def _quiet(**kw):
    return dict(progress=False, log=lambda s: None, **kw)


def test_early_stopping_restores_the_best_weights():
    X, y = _regression()
    model = Linear(3, 1, seed=0)
    scripted = iter([3.0, 2.0, 2.5, 2.6, 2.7, 2.8])  # best at the 2nd evaluation, then worse
    snaps = {}

    def on_eval(trainer, record):
        snaps[record["step"]] = _snapshot(trainer.model)

    trainer = Trainer(model, SGD(model, lr=0.01), _mse_step, [(X, y)], eval_fn=lambda m: next(scripted),
                      max_steps=100, eval_every=5, patience=3, on_eval=on_eval, **_quiet())
    trainer.fit()
    assert trainer.stop_reason == "early_stopping"
    assert trainer.step == 25  # evaluations at 5, 10 (best), 15, 20, 25 -> 3 without improvement
    assert trainer.best_step == 10 and trainer.best_value == 2.0
    assert _same(_snapshot(model), snaps[10])
    assert not _same(snaps[25], snaps[10])  # training did move on: restoring changed something


def test_early_stopping_in_max_mode_and_min_delta():
    X, y = _regression()
    model = Linear(3, 1, seed=0)
    scripted = iter([0.5, 0.6, 0.6005, 0.6008, 0.7])
    trainer = Trainer(model, SGD(model, lr=0.01), _mse_step, [(X, y)], eval_fn=lambda m: {"acc": next(scripted)},
                      monitor="acc", mode="max", min_delta=0.01, max_steps=50, eval_every=1, patience=2,
                      **_quiet())
    trainer.fit()
    assert trainer.best_step == 2 and trainer.step == 4  # +0.0005 and +0.0008 are below min_delta


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_guard_stops_at_the_failing_step_and_keeps_the_last_good_weights(bad, tmp_path):
    X, y = _regression()
    model = Linear(3, 1, seed=0)
    snaps = {}

    def step(model, batch, state):
        loss, n = _mse_step(model, batch)
        snaps[len(snaps)] = _snapshot(model)  # weights before this step's update
        return (bad if len(snaps) == 7 else loss), n

    trainer = Trainer(model, SGD(model, lr=0.01), step, [(X, y)], max_steps=20, checkpoint_dir=tmp_path,
                      eval_every=5, **_quiet())
    with pytest.raises(TrainingDiverged, match="step 7") as info:
        trainer.fit()
    assert info.value.step == 7 and trainer.step == 6
    assert str(bad) in str(info.value) and "learning rate" in str(info.value)
    assert _same(_snapshot(model), snaps[6])  # the bad step changed nothing
    assert load_checkpoint(tmp_path / "last.ckpt").step == 5  # and wrote no checkpoint


def test_guard_catches_an_infinite_gradient_and_an_exploding_loss():
    X, y = _regression()
    model = Linear(3, 1, seed=0)
    calls = []

    def inf_grad(model, batch, state):
        loss, n = _mse_step(model, batch)
        calls.append(1)
        if len(calls) == 3:
            model.weight.grad[0, 0] = np.inf
        return loss, n

    with pytest.raises(TrainingDiverged, match="step 3: the gradient norm is not finite"):
        Trainer(model, SGD(model, lr=0.01), inf_grad, [(X, y)], max_steps=10, **_quiet()).fit()

    losses = iter([2.0, 1.0, 0.5] + [0.01] * 12 + [15.0, 50.0])  # 15 > 0.01 is fine, 50 > 10 x 2 is not

    def exploding(model, batch, state):
        _mse_step(model, batch)
        return next(losses), 1

    with pytest.raises(TrainingDiverged, match="step 17: the loss 50 exploded"):
        Trainer(model, SGD(model, lr=0.0), exploding, [(X, y)], max_steps=30, **_quiet()).fit()


def test_best_last_and_named_checkpoints(tmp_path):
    X, y = _regression()
    model = Linear(3, 1, seed=0)
    scripted = iter([3.0, 1.0, 2.0, 4.0])
    trainer = Trainer(model, Adam(model, lr=0.01), _mse_step, [(X[:32], y[:32]), (X[32:], y[32:])],
                      eval_fn=lambda m: next(scripted), max_steps=8, eval_every=2, checkpoint_dir=tmp_path,
                      checkpoint_name="s{step}_v{val_loss:.1f}.ckpt", extra={"note": "hi"}, **_quiet())
    trainer.fit()
    names = sorted(os.listdir(tmp_path))
    assert names == sorted(["best.ckpt", "last.ckpt", "s2_v3.0.ckpt", "s4_v1.0.ckpt", "s6_v2.0.ckpt",
                            "s8_v4.0.ckpt"])
    best, last = load_checkpoint(tmp_path / "best.ckpt"), load_checkpoint(tmp_path / "last.ckpt")
    assert best.step == 4 and last.step == 8
    assert last.extra["note"] == "hi" and last.extra["trainer"]["best_step"] == 4
    assert last.optimizer_state["step"] == 8
    np.testing.assert_array_equal(last.model_state["weight"], model.weight.data)
    assert not any(n.endswith(".tmp") for n in names)  # atomic writes leave no temporaries


def _lm_setup(seed, data_kind):
    """A tiny dropout LSTM LM trained by truncated BPTT over an LMStream (state carried)."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 9, 4 * 6 * 5 + 1)  # 5 batches of 4 x 6
    model = LanguageModel(9, 6, 10, num_layers=2, dropout=0.3, seed=seed)
    opt = Adam(model, lr=0.01)
    sched = StepLR(opt, step_size=1, gamma=0.9)
    if data_kind == "stream":
        data = LMStream(ids, 4, 6)
    else:  # a seeded shuffle: resume must replay the earlier passes' orders
        stream = LMStream(ids, 4, 6)
        pairs = [stream[k] for k in range(len(stream))]
        order = batches(len(pairs), 1, seed=3)

        class Shuffled:  # re-iterable; each pass draws a new order from the seeded generator
            def __iter__(self):
                return (pairs[int(idx[0])] for idx in order)

            def __len__(self):
                return len(pairs)
        data = Shuffled()
    val = LMStream(rng.integers(0, 9, 2 * 6 + 1), 2, 6)

    def step(model, batch, state):
        x, y = batch
        logits, state = model(x, state)
        loss, grad = cross_entropy(logits, y)
        model.backward(grad)
        return loss, y.size, state

    def evaluate(model):
        val.reset()
        logits, _ = model(val[0][0])
        return cross_entropy(logits, val[0][1])[0]
    return model, opt, sched, data, step, evaluate


@pytest.mark.parametrize("data_kind", ["stream", "shuffled"])
def test_resume_equals_uninterrupted_training(tmp_path, data_kind):
    kw = dict(grad_clip=1.0, eval_every=3, **_quiet())
    model, opt, sched, data, step, ev = _lm_setup(0, data_kind)
    straight = Trainer(model, opt, step, data, eval_fn=ev, scheduler=sched, max_steps=13,
                       checkpoint_dir=tmp_path / "a", **kw)
    straight.fit()

    model, opt, sched, data, step, ev = _lm_setup(0, data_kind)
    first = Trainer(model, opt, step, data, eval_fn=ev, scheduler=sched, max_steps=7,
                    checkpoint_dir=tmp_path / "b", **kw)
    first.fit()  # stops mid-pass (batch 2 of pass 1) with a carried state
    assert first.batch_in_epoch == 2 and first._state is not None

    model, opt, sched, data, step, ev = _lm_setup(99, data_kind)  # other initial weights: all overwritten
    second = Trainer(model, opt, step, data, eval_fn=ev, scheduler=sched, max_steps=13,
                     checkpoint_dir=tmp_path / "b", **kw)
    second.resume(tmp_path / "b" / "last.ckpt")
    assert second.step == 7
    second.fit()
    assert _same(_snapshot(straight.model), _snapshot(second.model))
    assert straight.optimizer.lr == second.optimizer.lr and straight.epoch == second.epoch == 2

    def evals(t):
        return [(h["step"], h["val_loss"]) for h in t.history if h["kind"] == "eval"]
    # the same evaluations, plus the interrupted run's final one at step 7
    assert [e for e in evals(second) if e[0] != 7] == evals(straight)


def test_resume_rejects_a_checkpoint_without_trainer_state(tmp_path):
    from rnnfast.checkpoint import save_checkpoint
    X, y = _regression()
    model = Linear(3, 1, seed=0)
    save_checkpoint(tmp_path / "plain.ckpt", model)
    before = _snapshot(model)
    trainer = Trainer(model, SGD(model, lr=0.1), _mse_step, [(X, y)], max_steps=3, **_quiet())
    with pytest.raises(ValueError, match="no trainer state"):
        trainer.resume(tmp_path / "plain.ckpt")
    assert _same(before, _snapshot(model))


def test_history_contents():
    X, y = _regression(n=40)
    model = Linear(3, 1, seed=0)
    data = batches((X, y), 10, seed=0)  # 4 batches per pass
    trainer = Trainer(model, SGD(model, lr=0.05), _mse_step, data, eval_fn=lambda m: {
        "val_loss": mse_loss(m(X), y)[0], "val_mae": float(np.abs(m(X) - y).mean())},
        epochs=3, log_every=2, **_quiet())
    history = trainer.fit()
    assert history is trainer.history
    train = [h for h in history if h["kind"] == "train"]
    evals = [h for h in history if h["kind"] == "eval"]
    assert [h["step"] for h in train] == [2, 4, 6, 8, 10, 12]
    assert [h["step"] for h in evals] == [4, 8, 12]  # once per pass (no eval_every)
    for h in train:
        assert set(h) >= {"step", "epoch", "loss", "grad_norm", "lr", "tokens_per_s", "elapsed"}
        assert h["lr"] == 0.05 and h["grad_norm"] > 0 and h["tokens_per_s"] > 0
    assert train[-1]["loss"] < train[0]["loss"]  # it learns
    for h in evals:
        assert set(h) >= {"val_loss", "val_mae", "train_loss", "best", "epoch"}
    assert [h["epoch"] for h in evals] == [1.0, 2.0, 3.0]
    assert trainer.stop_reason == "epochs"
    with pytest.raises(ValueError, match="val_loss"):
        Trainer(model, SGD(model, lr=0.1), _mse_step, data, eval_fn=lambda m: {"acc": 1.0}, max_steps=1,
                **_quiet()).fit()
    with pytest.raises(ValueError, match="budget"):
        Trainer(model, SGD(model, lr=0.1), _mse_step, data)


def test_time_budget_stops_in_time():
    X, y = _regression()
    model = Linear(3, 1, seed=0)

    def slow(model, batch, state):
        time.sleep(0.02)
        return _mse_step(model, batch)

    trainer = Trainer(model, SGD(model, lr=0.01), slow, [(X, y)], time_budget=0.4, eval_fn=lambda m: 1.0,
                      eval_every=5, **_quiet())
    t0 = time.perf_counter()
    trainer.fit()
    took = time.perf_counter() - t0
    assert trainer.stop_reason == "time_budget"
    assert 5 <= trainer.step <= 20
    assert took < 0.4 + 0.1
    assert trainer.history[-1]["kind"] == "eval" and trainer.history[-1]["step"] == trainer.step


def test_log_lines_without_a_progress_bar():
    X, y = _regression()
    model = Linear(3, 1, seed=0)
    lines = []
    Trainer(model, SGD(model, lr=0.01), _mse_step, [(X, y)], eval_fn=lambda m: 0.5, max_steps=4, eval_every=4,
            log_every=2, progress=False, log=lines.append).fit()
    assert any(line.startswith("step 2 |") and "tok/s" in line and "grad norm" in line for line in lines)
    assert any(line.startswith("eval step 4") and "val_loss 0.5000" in line for line in lines)
    assert math.isfinite(float(lines[0].split("loss ")[1].split()[0]))


def test_ctrl_c_finishes_the_step_saves_and_resumes_exactly(tmp_path):
    kw = dict(grad_clip=1.0, eval_every=100, **_quiet())
    model, opt, sched, data, step, ev = _lm_setup(0, "stream")
    straight = Trainer(model, opt, step, data, eval_fn=ev, scheduler=sched, max_steps=9, **kw)
    straight.fit()

    def press_ctrl_c_in_step_5(model, batch, state):
        out = step(model, batch, state)
        if trainer.step == 4:  # step 5 is under way: it must still complete
            os.kill(os.getpid(), signal.SIGINT)
        return out
    model, opt, sched, data, step, ev = _lm_setup(0, "stream")
    trainer = Trainer(model, opt, press_ctrl_c_in_step_5, data, eval_fn=ev, scheduler=sched, max_steps=9,
                      checkpoint_dir=tmp_path, **kw)
    with pytest.raises(TrainingInterrupted) as info:
        trainer.fit()
    assert isinstance(info.value, KeyboardInterrupt)
    assert info.value.step == trainer.step == 5 and info.value.path == str(tmp_path / "last.ckpt")
    assert trainer.stop_reason == "interrupted" and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert load_checkpoint(tmp_path / "last.ckpt").step == 5

    model, opt, sched, data, step, ev = _lm_setup(99, "stream")
    resumed = Trainer(model, opt, step, data, eval_fn=ev, scheduler=sched, max_steps=9, checkpoint_dir=tmp_path, **kw)
    resumed.resume(tmp_path / "last.ckpt")
    resumed.fit()
    assert _same(_snapshot(straight.model), _snapshot(resumed.model))


def test_keep_checkpoints_deletes_the_oldest_named_copies(tmp_path):
    X, y = _regression()
    model = Linear(3, 1, seed=0)
    trainer = Trainer(model, SGD(model, lr=0.01), _mse_step, [(X, y)], eval_fn=lambda m: 1.0, max_steps=6,
                      eval_every=1, checkpoint_dir=tmp_path, checkpoint_name="s{step}.ckpt", keep_checkpoints=2,
                      **_quiet())
    trainer.fit()
    assert sorted(os.listdir(tmp_path)) == ["best.ckpt", "last.ckpt", "s5.ckpt", "s6.ckpt"]
    with pytest.raises(ValueError, match="keep_checkpoints"):
        Trainer(model, SGD(model, lr=0.01), _mse_step, [(X, y)], max_steps=1, keep_checkpoints=-1)
