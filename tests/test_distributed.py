"""rnnfast.distributed and Trainer(distributed=True): sharding without MPI, then real ranks.

The multi-rank tests start ``mpiexec -n 2`` (tests/mpi_ranks.py; about a second per launch) and compare
what the ranks computed with this process computing the whole batch alone. Skipped without
mpi4py/mpiexec, except in CI (RNNFAST_REQUIRE_MPI=1), where a missing MPI fails.
"""
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

import mpi_ranks
import rnnfast
from rnnfast import charlm
from rnnfast import distributed as dist
from rnnfast.data import LMStream

HERE = os.path.dirname(os.path.abspath(__file__))
LAUNCH_TIMEOUT = 240  # seconds; a loaded 2-core machine starts two ranks in a few


def _launch(mpiexec, args, n=2, timeout=LAUNCH_TIMEOUT, check=True):
    """Run ``mpiexec -n n args``; past ``timeout`` kill its whole process group (the ranks too) and fail."""
    env = dict(os.environ)
    env.pop("RNNFAST_NUM_THREADS", None)
    with subprocess.Popen([mpiexec, "-n", str(n), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env, start_new_session=True) as p:
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
            pytest.fail(f"mpiexec -n {n} {' '.join(args[1:])} still ran after {timeout}s (a rank hangs):\n{out}\n{err}")
    proc = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    if check:
        assert proc.returncode == 0, f"mpiexec failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def _ranks(mpiexec, mode, tmp_path, n=2, timeout=LAUNCH_TIMEOUT):
    _launch(mpiexec, [sys.executable, os.path.join(HERE, "mpi_ranks.py"), mode, str(tmp_path)], n, timeout)
    return [np.load(tmp_path / f"rank{r}.npz") for r in range(n)]


def _arrays(npz, start, count):
    return [npz[f"arr_{i}"] for i in range(start, start + count)]


# ----------------------------------------------------------------------------------------
# without MPI: sharding is pure arithmetic
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,world", [(10, 3), (2, 2), (7, 1), (5, 4)])
def test_shard_rows_cover_the_batch_once_in_order(n, world):
    parts = [dist.shard_rows(n, r, world) for r in range(world)]
    assert [i for s in parts for i in range(s.start, s.stop)] == list(range(n))
    assert max(s.stop - s.start for s in parts) - min(s.stop - s.start for s in parts) <= 1


def test_sharded_batches_together_are_the_single_process_batches():
    X = np.arange(23) * 10
    one = dist.ShardedBatches(X, 6, seed=4, rank=0, world_size=1)
    shards = [dist.ShardedBatches(X, 6, seed=4, rank=r, world_size=3) for r in range(3)]
    assert {len(s) for s in shards} == {len(one)} == {4}  # 23 = 3 x 6 + 5: the last global batch is kept
    for _ in range(2):  # two passes: each a new order, the same on every rank
        whole = list(one)
        parts = [list(s) for s in shards]
        for k, batch in enumerate(whole):
            np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), batch)
    assert not np.array_equal(one.global_order(0), one.global_order(1))
    np.testing.assert_array_equal(np.sort(np.concatenate(whole)), X[np.sort(one.global_order(1))])


def test_sharded_batches_drop_a_last_batch_smaller_than_the_world():
    s = dist.ShardedBatches(13, 4, seed=0, rank=1, world_size=4)  # 13 = 3 x 4 + 1: one sample for 4 ranks
    assert len(s) == 3 and all(len(b) == 1 for b in s)
    s.set_epoch(5)
    np.testing.assert_array_equal(next(iter(s)), [s.global_order(5)[1]])


def test_sharded_stream_rows_are_the_whole_stream_rows():
    stream = LMStream(np.arange(400) % 13, 5, 7)
    parts = [dist.ShardedStream(LMStream(np.arange(400) % 13, 5, 7), r, 2) for r in range(2)]
    assert [p.batch_size for p in parts] == [3, 2] and len(parts[0]) == len(stream)
    iters = [iter(p) for p in parts]
    for x, y in stream:
        (x0, y0), (x1, y1) = next(iters[0]), next(iters[1])
        np.testing.assert_array_equal(np.concatenate([x0, x1]), x)
        np.testing.assert_array_equal(np.concatenate([y0, y1]), y)


@pytest.mark.parametrize("call,match", [
    (lambda: dist.ShardedBatches(10, 2, rank=0, world_size=3), "batch_size: expected an int >= 3"),
    (lambda: dist.ShardedBatches(10, 4, rank=3, world_size=3), "rank: expected an int >= 0 and <= 2"),
    (lambda: dist.ShardedBatches(10, 4, seed=-1, rank=0, world_size=1), "seed: expected an int >= 0"),
    (lambda: dist.ShardedStream(LMStream(np.arange(100), 2, 5), 0, 3), "batch_size 2 is smaller than the world"),
    (lambda: dist.shard_rows(4, 0, 0), "world_size: expected an int >= 1"),
])
def test_sharding_bad_arguments_name_what_was_expected(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_without_mpi4py_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # makes `from mpi4py import MPI` fail
    monkeypatch.setattr(dist, "_COMM", None)
    assert not dist.mpi_available()
    with pytest.raises(ImportError, match=r"rnnfast\[mpi\]"):
        dist.world_size()
    with pytest.raises(ImportError, match="mpi4py"):
        mpi_ranks.lm_trainer(mpi_ranks.lm_stream(), 0.0, max_steps=1, distributed=True)
    mpi_ranks.lm_trainer(mpi_ranks.lm_stream(), 0.0, max_steps=1).fit()  # without distributed nothing needs MPI


# ----------------------------------------------------------------------------------------
# real ranks
# ----------------------------------------------------------------------------------------
def test_broadcast_then_allreduce_give_the_whole_batch_gradient(mpiexec, tmp_path):
    """Ragged rows and ignore_index: the weighted allreduce is the gradient of the whole batch's mean."""
    ranks = _ranks(mpiexec, "collectives", tmp_path)
    model = mpi_ranks.tagger()
    n = int(ranks[0]["n"])
    x, y, lengths = mpi_ranks.tagger_batch()
    want, count = mpi_ranks.tagger_grads(model, x, y, lengths)
    for r, res in enumerate(ranks):
        for got, init in zip(_arrays(res, 0, n), model.parameters()):
            np.testing.assert_array_equal(got, init.data, err_msg=f"rank {r}: parameters after the broadcast")
        for i, (got, ref) in enumerate(zip(_arrays(res, n, n), want)):
            scale = max(np.abs(ref).max(), 1e-30)
            assert np.abs(got - ref).max() <= 1e-5 * scale, f"rank {r}: gradient {i} differs"
        assert float(res["weight"]) == count  # the token counts were summed
        assert list(res["values"]) == [0.0 + 1.0]  # the extra values too (ranks 0 + 1)
        # two ranks on this host share its cores: each defaults to half of what one process takes
        assert int(res["local_ranks"]) == 2
        alone = rnnfast.cpu_info()["default_threads"]
        if alone["affinity"] >= alone["online"]:
            assert int(res["threads"]) == max(1, alone["threads"] // 2)


def test_two_ranks_train_like_one_process_and_resume_exactly(mpiexec, tmp_path):
    ranks = _ranks(mpiexec, "trainer", tmp_path)
    n = int(ranks[0]["n"])
    one = mpi_ranks.lm_trainer(mpi_ranks.lm_stream(), 0.0, max_steps=20)  # not distributed: the whole batch
    one.fit()
    want = np.array([h["loss"] for h in one.history if h["kind"] == "train"])
    tagger = mpi_ranks.tagger_trainer(rank=0, world_size=1)  # the same global batches in one process
    tagger.fit()
    tagger_want = np.array([h["loss"] for h in tagger.history if h["kind"] == "train"])
    assert len(tagger_want) == 12  # 3 epochs of 4 batches
    for r, res in enumerate(ranks):
        assert len(res["losses"]) == 20
        np.testing.assert_allclose(res["losses"], want, rtol=1e-4, err_msg=f"rank {r}: global losses")
        np.testing.assert_allclose(res["tagger_losses"], tagger_want, rtol=1e-4, err_msg=f"rank {r}: tagger")
    # parameters stay identical on every rank, with and without dropout, straight or resumed
    for block in range(3):
        for a, b in zip(_arrays(ranks[0], block * n, n), _arrays(ranks[1], block * n, n)):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(_arrays(ranks[0], n, n), _arrays(ranks[0], 2 * n, n)):
        np.testing.assert_array_equal(a, b, err_msg="the resumed run drew other dropout masks or data")
    assert str(ranks[0]["dropout_rng"]) != str(ranks[1]["dropout_rng"]), "the ranks drew the same dropout masks"
    for a, ref in zip(_arrays(ranks[0], 0, n), one.model.parameters()):
        np.testing.assert_allclose(a, ref.data, rtol=1e-3, atol=1e-5)


@pytest.mark.slow  # a 1 s time budget and a late start: seconds
def test_time_budget_and_ctrl_c_on_one_rank_stop_every_rank_at_the_same_step(mpiexec, tmp_path):
    ranks = _ranks(mpiexec, "stops", tmp_path, timeout=90)
    assert int(ranks[0]["budget_step"]) == int(ranks[1]["budget_step"]) > 0
    assert int(ranks[0]["interrupt_step"]) == int(ranks[1]["interrupt_step"]) == 4  # after the step under way
    assert str(ranks[0]["reason"]) == str(ranks[1]["reason"]) == "interrupted"


@pytest.mark.parametrize("how", ["raise", "kill"])
def test_a_failing_rank_ends_the_job_instead_of_hanging(mpiexec, tmp_path, how):
    proc = _launch(mpiexec, [sys.executable, os.path.join(HERE, "mpi_ranks.py"), "abort", how], timeout=60,
                   check=False)
    assert proc.returncode != 0
    if how == "raise":
        assert "rank 1 fails on purpose" in proc.stderr and "aborting the MPI job" in proc.stderr


def test_charlm_train_distributed_matches_one_process(mpiexec, tmp_path, capsys):
    corpus = tmp_path / "code.py"
    corpus.write_text("".join(f"def f{i}(x):\n    return x * {i} + {i % 7}\n\n" for i in range(80)))
    opts = ["train", str(corpus), "--layers", "1", "--hidden", "16", "--embedding", "8", "--seq-len", "8",
            "--batch-size", "5", "--val-frac", "0.1", "--sample-len", "0", "--steps", "12", "--eval-interval", "6",
            "--log-interval", "100"]
    proc = _launch(mpiexec, [sys.executable, "-m", "rnnfast.cli", "charlm", *opts, "--distributed",
                             "--checkpoint-dir", str(tmp_path / "two")])
    assert charlm.main([*opts, "--checkpoint-dir", str(tmp_path / "one")]) == 0
    single = capsys.readouterr().out
    pattern = r"validation loss at step 12: ([\d.]+) nats"
    assert proc.stdout.count("validation loss at step 12") == 1, proc.stdout  # rank 0 alone prints
    assert float(re.search(pattern, proc.stdout).group(1)) == pytest.approx(
        float(re.search(pattern, single).group(1)), rel=1e-4)  # printed to 4 decimals
    assert "distributed: 2 ranks" in proc.stdout
    assert sorted(os.listdir(tmp_path / "two")) == sorted(os.listdir(tmp_path / "one"))
    # its checkpoint holds two ranks' states: one process must not resume it as its own
    assert charlm.main(["train", "--resume", str(tmp_path / "two" / "last.ckpt"), "--steps", "14"]) == 2
    assert "written by a run on 2 rank(s), but this one has 1" in capsys.readouterr().err


@pytest.mark.slow  # three launches: seconds
def test_ctrl_c_under_mpiexec_saves_once_and_the_run_resumes_exactly(mpiexec, tmp_path):
    corpus = tmp_path / "code.py"
    corpus.write_text("".join(f"def f{i}(x):\n    return x * {i} + {i % 7}\n\n" for i in range(80)))
    opts = [sys.executable, "-m", "rnnfast.cli", "charlm", "train", str(corpus), "--distributed", "--layers", "1",
            "--hidden", "16", "--embedding", "8", "--seq-len", "8", "--batch-size", "5", "--val-frac", "0.1",
            "--dropout", "0.2", "--sample-len", "0", "--eval-interval", "1000", "--log-interval", "1"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with subprocess.Popen([mpiexec, "-n", "2", *opts, "--steps", "100000000", "--checkpoint-dir", str(tmp_path / "a")],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                          start_new_session=True) as proc:
        try:
            for line in proc.stdout:  # training is under way: press Ctrl-C (mpiexec forwards it to the ranks)
                if line.startswith("step 5 |"):
                    break
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=LAUNCH_TIMEOUT)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    last = tmp_path / "a" / "last.ckpt"
    step = int(re.search(r"interrupted after step (\d+); saved", err).group(1))
    assert err.count("interrupted after step") == 1, err  # rank 0 alone says it
    assert f"`mpiexec -n 2 rnnfast charlm train --distributed --resume {last}`" in err
    _launch(mpiexec, [*opts[:5], "--distributed", "--resume", str(last), "--steps", str(step + 3)])
    _launch(mpiexec, [*opts, "--steps", str(step + 3), "--checkpoint-dir", str(tmp_path / "b")])
    from rnnfast.checkpoint import load_checkpoint
    a, b = load_checkpoint(last), load_checkpoint(tmp_path / "b" / "last.ckpt")
    assert a.step == b.step == step + 3
    for k in a.model_state:
        np.testing.assert_array_equal(a.model_state[k], b.model_state[k])
