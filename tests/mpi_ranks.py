"""What each MPI rank runs in tests/test_distributed.py (``mpiexec -n 2 python mpi_ranks.py MODE OUT``).

Every mode writes ``OUT/rank{r}.npz`` (or fails on purpose); the test compares the ranks' results with
one process computing the whole batch. The builders are shared with the test, so both sides make the
same model and data. mpi4py is imported only inside the modes.
"""
import os
import sys

import numpy as np

from rnnfast.data import LMStream
from rnnfast.losses import cross_entropy
from rnnfast.models import LanguageModel, SequenceTagger
from rnnfast.optim import Adam

VOCAB, TAGS = 11, 5


def tagger_batch():
    """A ragged batch of 5 sequences: padding and some inner targets are ignore_index (-100)."""
    rng = np.random.default_rng(7)
    lengths = np.array([9, 3, 7, 1, 6])
    x = rng.integers(1, VOCAB, size=(5, 9))
    y = rng.integers(0, TAGS, size=(5, 9))
    for b, n in enumerate(lengths):
        x[b, n:], y[b, n:] = 0, -100
    y[0, 2] = y[2, 5] = y[4, 0] = -100
    return x, y, lengths


def tagger():
    return SequenceTagger(TAGS, 12, vocab_size=VOCAB, embedding_dim=6, seed=3)


def tagger_grads(model, x, y, lengths):
    """Gradients of the mean cross-entropy over the counted targets of these rows; (grads, count)."""
    model.zero_grad()
    em = model(x, lengths)
    _, g = cross_entropy(em, y)
    model.backward(g)
    return [p.grad.copy() for p in model.parameters()], int((y != -100).sum())


def tagger_data():
    """14 ragged sequences with ignored targets: batches of 4, then a last one of 2 (1 per rank)."""
    rng = np.random.default_rng(9)
    lengths = rng.integers(1, 8, size=14)
    x = rng.integers(1, VOCAB, size=(14, 7))
    y = rng.integers(0, TAGS, size=(14, 7))
    y[rng.random((14, 7)) < 0.2] = -100
    for b, n in enumerate(lengths):
        x[b, n:], y[b, n:] = 0, -100
    return x, y, lengths


def tagger_trainer(rank=None, world_size=None, **kw):
    """A Trainer over ShardedBatches of tagger_data: the step returns the loss's own normalizer."""
    from rnnfast.distributed import ShardedBatches
    from rnnfast.train import Trainer
    model = tagger()

    def step(m, batch, state):
        xb, yb, lb = batch
        loss, g = cross_entropy(m(xb, lb), yb)
        m.backward(g)
        return loss, int((yb != -100).sum())

    data = ShardedBatches(tagger_data(), 4, seed=2, rank=rank, world_size=world_size)
    return Trainer(model, Adam(model.parameters(), lr=1e-2), step, data, epochs=3, log_every=1,
                   log=lambda line: None, **kw)


def lm_corpus():
    return np.random.default_rng(1).integers(0, VOCAB, size=4000)


def lm_trainer(train, dropout, **kw):
    """A small LanguageModel Trainer; ``train`` is the (whole or sharded) stream of 5 rows."""
    from rnnfast.train import Trainer
    model = LanguageModel(VOCAB, 8, 16, 1, "lstm", dropout=dropout, seed=5)

    def step(m, batch, state):
        x, yb = batch
        logits, state = m(x, state)
        loss, g = cross_entropy(logits, yb)
        m.backward(g)
        return loss, yb.size, state

    return Trainer(model, Adam(model.parameters(), lr=1e-2), step, train, grad_clip=0.5, log_every=1,
                   log=lambda line: None, seed=11, **kw)


def lm_stream():
    return LMStream(lm_corpus(), 5, 10)  # 5 rows: 3 on rank 0 and 2 on rank 1, so weighting matters


def _collectives(comm, out):
    import rnnfast
    from rnnfast import distributed as dist
    r = comm.Get_rank()
    model = tagger()
    if r != 0:  # different weights everywhere but rank 0: the broadcast must overwrite them
        for p in model.parameters():
            p.data = p.data + np.float32(r)
    dist.broadcast_parameters(model)
    params = [p.data.copy() for p in model.parameters()]
    x, y, lengths = tagger_batch()
    rows = dist.shard_rows(len(x))
    _, count = tagger_grads(model, x[rows], y[rows], lengths[rows])
    red = dist.allreduce_gradients(model.parameters(), weight=count, values=[float(r)])
    np.savez(os.path.join(out, f"rank{r}.npz"), *params, *[p.grad for p in model.parameters()],
             n=len(params), weight=red.weight, values=red.values,
             threads=rnnfast.cpu_info()["default_threads"]["threads"],
             local_ranks=rnnfast.cpu_info()["default_threads"]["mpi_local_ranks"])


def _trainer(comm, out):
    from rnnfast.distributed import ShardedStream
    r = comm.Get_rank()
    # 1) no dropout, 20 steps: compared with one process on the whole batch
    t = lm_trainer(ShardedStream(lm_stream()), 0.0, max_steps=20, distributed=True)
    for p in t.model.parameters() if r else ():  # fit() must start every rank from rank 0's weights
        p.data = p.data * np.float32(0.5)
    t.fit()
    losses = [h["loss"] for h in t.history if h["kind"] == "train"]
    plain = [p.data.copy() for p in t.model.parameters()]
    tg = tagger_trainer(distributed=True)  # ragged sequences, ignored targets, a last batch of 2
    tg.fit()
    tagger_losses = [h["loss"] for h in tg.history if h["kind"] == "train"]
    # 2) dropout: a run checkpointed at step 10, then resumed to 20, must equal the straight run
    ck = os.path.join(out, "ck")
    kw = dict(max_steps=20, eval_every=10, checkpoint_dir=ck, checkpoint_name="step{step}.ckpt", distributed=True)
    a = lm_trainer(ShardedStream(lm_stream()), 0.3, **kw)
    a.fit()
    b = lm_trainer(ShardedStream(lm_stream()), 0.3, **kw)
    b.resume(os.path.join(ck, "step10.ckpt"))
    b.fit()
    straight = [p.data for p in a.model.parameters()]
    resumed = [p.data for p in b.model.parameters()]
    masks = str(a.model.get_rng_state())  # where this rank's dropout stream stands: differs between ranks
    np.savez(os.path.join(out, f"rank{r}.npz"), *plain, *straight, *resumed, losses=np.array(losses), n=len(plain),
             tagger_losses=np.array(tagger_losses),
             dropout_rng=masks)


def _stops(comm, out):
    """Stops one rank alone would take: every rank must stop at the same step. Rank 1 starts 0.5 s
    late (its own clock would stop it after rank 0 left), then only rank 1 gets a Ctrl-C (SIGINT)."""
    import signal
    import time
    from rnnfast.distributed import ShardedStream
    from rnnfast.train import TrainingInterrupted
    r = comm.Get_rank()
    t = lm_trainer(ShardedStream(lm_stream()), 0.0, time_budget=1.0, eval_every=5, distributed=True)
    if r == 1:
        time.sleep(0.5)
    t.fit()
    c = lm_trainer(ShardedStream(lm_stream()), 0.0, max_steps=1000, distributed=True)
    step = c.step_fn

    def interrupted_on_rank_1(m, batch, state):
        if r == 1 and c.step == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return step(m, batch, state)

    c.step_fn = interrupted_on_rank_1
    try:
        c.fit()
    except TrainingInterrupted:
        pass
    np.savez(os.path.join(out, f"rank{r}.npz"), budget_step=t.step, interrupt_step=c.step,
             reason=c.stop_reason or "")


def _abort(comm, out):
    """Rank 1 fails at step 3 (raises, or is killed) while rank 0 waits in the allreduce."""
    import signal
    from rnnfast.distributed import ShardedStream
    how = out  # 'raise' or 'kill'
    t = lm_trainer(ShardedStream(lm_stream()), 0.0, max_steps=50, distributed=True)
    step = t.step_fn

    def failing(m, batch, state):
        if comm.Get_rank() == 1 and t.step == 2:
            if how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("rank 1 fails on purpose")
        return step(m, batch, state)

    t.step_fn = failing
    t.fit()


def main(mode, out):
    from mpi4py import MPI
    {"collectives": _collectives, "trainer": _trainer, "stops": _stops, "abort": _abort}[mode](MPI.COMM_WORLD, out)


if __name__ == "__main__":
    main(*sys.argv[1:3])
