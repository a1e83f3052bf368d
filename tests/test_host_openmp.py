"""Long kernel calls on torch's OpenMP threads (rnnfast/torch/_openmp.py, csrc/core/team.h
set_host_openmp): the same bits as on rnnfast's own team, only while torch's threads are awake,
and safe across fork, Ctrl-C and Python threads. Each test runs in a fresh interpreter, so that
what torch's pool does (and whether it is registered) is the test's own."""
import subprocess
import sys
import textwrap

import pytest

from conftest import require_torch
from helpers import IN_FORKED_CHILDREN, interrupt_python

PRELUDE = """
import threading, time
import numpy as np
import torch
torch.set_num_threads(2)
import rnnfast, rnnfast.torch
from rnnfast import _core
rnnfast.set_num_threads(2)
BIG = torch.randn(2000, 2000)

def torch_op():
    # a parallel torch op: its pool's threads spin for milliseconds after it
    return float((BIG * BIG).sum())

def train_step(m, x, h0):
    m.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_()
    torch_op()
    y, state = m(x, h0)
    torch_op()
    ((y * y).sum() + sum((s * s).sum() for s in (state if isinstance(state, tuple) else (state,)))).backward()
    return [y.detach().numpy().copy(), x.grad.numpy().copy()] + [p.grad.numpy().copy() for p in m.parameters()]
"""


def run(code, timeout=300):
    require_torch()
    return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout)


def test_calls_after_torch_ops_run_on_torchs_threads_with_the_same_bits():
    res = run("""
        assert rnnfast.cpu_info()["team"]["host_openmp"], "rnnfast.torch did not register torch's OpenMP"
        g = torch.Generator().manual_seed(0)
        cases = [(rnnfast.torch.LSTM, dict(num_layers=2)), (rnnfast.torch.GRU, dict(bidirectional=True)),
                 (rnnfast.torch.RNN, dict(num_layers=2, bidirectional=True))]
        for cls, kw in cases:
            torch.manual_seed(1)
            m = cls(48, 96, **kw)
            D, L = (2 if kw.get("bidirectional") else 1), kw.get("num_layers", 1)
            x = torch.randn(60, 16, 48, generator=g)
            h0 = torch.randn(D * L, 16, 96, generator=g)
            if cls is rnnfast.torch.LSTM:
                h0 = (h0, torch.randn(D * L, 16, 96, generator=g))
            got = {}
            for share in (True, False, True):
                assert rnnfast.torch.share_torch_threads(share) == share
                assert rnnfast.cpu_info()["team"]["host_openmp"] == share
                _core._team_stats(True)
                outs = [train_step(m, x, h0) for _ in range(3)]
                stats = _core._team_stats()
                if share:
                    assert stats["host"] > 0, stats
                else:
                    assert stats["host"] == 0, stats
                for o in outs[1:]:
                    assert all(np.array_equal(a, b) for a, b in zip(o, outs[0]))
                got.setdefault(share, outs[0])
            assert all(np.array_equal(a, b) for a, b in zip(got[True], got[False])), cls.__name__
        print("ok")
    """)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stdout + res.stderr


def test_sleeping_torch_threads_leave_the_call_to_our_own_team():
    """After an idle gap torch's threads sleep, and one woken took an OS tick (4 ms) on these VMs:
    then the call runs on rnnfast's own team; right after a torch op, on torch's threads."""
    res = run("""
        m = rnnfast.nn.LSTM(128, 256).eval()
        x = np.random.default_rng(0).standard_normal((100, 8, 128)).astype(np.float32)
        torch_op(); m(x)  # the first call learns which threads are torch's
        counts = []
        for _ in range(5):
            time.sleep(0.3)  # torch's threads stop spinning after ~10 ms
            _core._team_stats(True); m(x); idle = _core._team_stats()
            torch_op()
            _core._team_stats(True); m(x); busy = _core._team_stats()
            counts.append((idle["host"], idle["calls"], busy["host"]))
        # idle: never on torch's threads; right after a torch op: on them (a loaded machine may
        # find one of torch's threads not yet running)
        assert all(idle == 0 and calls == 1 for idle, calls, _ in counts), counts
        assert sum(busy for _, _, busy in counts[1:]) >= 3, counts
        print("ok")
    """)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stdout + res.stderr


def test_forked_children_use_their_own_team():
    """torch's OpenMP pool does not survive a fork (libgomp would wait for its lost threads): the
    child forgets it and computes the parent's results."""
    res = run(IN_FORKED_CHILDREN + textwrap.dedent("""
        m = rnnfast.nn.GRU(64, 128).eval()
        x = np.random.default_rng(0).standard_normal((80, 8, 64)).astype(np.float32)
        for _ in range(5):
            torch_op(); expected = m(x)[0]
        assert _core._team_stats()["host"] > 0

        def child(q):
            q.put((rnnfast.cpu_info()["team"]["host_openmp"], [m(x)[0] for _ in range(5)]))

        outs = in_forked_children(child)
        assert not any(host for host, _ in outs)
        assert all(np.array_equal(y, expected) for _, ys in outs for y in ys)
        print("ok")
    """), timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stdout + res.stderr


def test_python_threads_at_once_with_torchs_threads():
    """Three Python threads train drop-in modules at once (one gets torch's threads, the others
    rnnfast's team or run alone): each computes what it computes alone."""
    res = run("""
        torch.manual_seed(0)
        mods = [rnnfast.torch.LSTM(32, 64 + 8 * i) for i in range(3)]
        xs = [torch.randn(40, 8, 32) for _ in mods]
        alone = [train_step(m, x, None) for m, x in zip(mods, xs)]
        errors = []

        def work(i):
            try:
                for _ in range(10):
                    got = train_step(mods[i], xs[i], None)
                    assert all(np.array_equal(a, b) for a, b in zip(got, alone[i]))
            except Exception as e:  # reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors and not any(t.is_alive() for t in threads), errors
        print("ok")
    """)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stdout + res.stderr


def test_ctrl_c_stops_a_long_call_on_torchs_threads():
    require_torch()
    code = PRELUDE + textwrap.dedent("""
        m = rnnfast.nn.LSTM(1, 2048).eval()
        x = np.ones((4000, 1, 1), np.float32)
        print("ready", flush=True)
        time.sleep(0.5)
        _core._team_stats(True)
        t0 = time.perf_counter()
        try:
            torch_op()
            m(x)
            print("finished", time.perf_counter() - t0, flush=True)
        except KeyboardInterrupt:
            print("interrupted", time.perf_counter() - t0, _core._team_stats()["host"], flush=True)
    """)
    returncode, out, err = interrupt_python(code, after=1.5)
    words = out.split()
    assert returncode == 0 and words[0] == "interrupted", (out, err)
    assert float(words[1]) < 3.0 and words[2] == "1", out  # on torch's threads, stopped ~1 s in


@pytest.mark.parametrize("share", [True, False])
def test_share_torch_threads_reports_what_it_did(share):
    res = run(f"""
        print(rnnfast.torch.share_torch_threads({share}), rnnfast.cpu_info()["team"]["host_openmp"])
    """)
    assert res.returncode == 0 and res.stdout.split() == [str(share)] * 2, res.stdout + res.stderr


def test_a_torch_running_fewer_threads_than_the_call_leaves_it_to_our_own_team():
    """torch.set_num_threads(1): torch has no pool thread spinning, so nothing to share (and a
    region of two would grow torch's pool by a thread that then spins after each of our calls)."""
    res = run("""
        m = rnnfast.nn.LSTM(128, 256).eval()
        x = np.random.default_rng(0).standard_normal((100, 8, 128)).astype(np.float32)
        torch.set_num_threads(1)
        _core._team_stats(True)
        for _ in range(5):
            torch_op(); m(x)
        one = _core._team_stats(True)
        torch.set_num_threads(2)
        for _ in range(5):
            torch_op(); m(x)
        two = _core._team_stats()
        print(one["host"], one["calls"], two["host"] > 0)
    """)
    assert res.returncode == 0 and res.stdout.split() == ["0", "5", "True"], res.stdout + res.stderr


def test_drop_in_modules_use_at_most_torchs_thread_count():
    """rnnfast.torch caps its kernel calls at torch.get_num_threads(), as torch.nn's modules use:
    with torch.set_num_threads(1) a drop-in forward, backward and cell step run on one thread (the
    same bits), while rnnfast.nn's modules keep rnnfast's own setting."""
    res = run("""
        torch.manual_seed(0)
        m, cell = rnnfast.torch.LSTM(128, 256), rnnfast.torch.GRUCell(128, 256)
        x = torch.randn(100, 8, 128, requires_grad=True)
        xc = torch.randn(8, 128, requires_grad=True)
        plain = rnnfast.nn.LSTM(128, 256).eval()
        xn = np.zeros((100, 8, 128), np.float32)
        out = {}
        for n in (1, 2):
            torch.set_num_threads(n)
            x.grad = xc.grad = None
            _core._team_stats(True)
            y, _ = m(x)
            y.sum().backward()
            h = cell(xc)
            h.sum().backward()
            drop_in = _core._team_stats(True)["calls"]
            plain(xn)
            out[n] = [t.detach().numpy().copy() for t in (y, x.grad, h, xc.grad)]
            print(n, drop_in > 0, _core._team_stats()["calls"] > 0)
        print(all(np.array_equal(a, b) for a, b in zip(out[1], out[2])))
    """)
    assert res.returncode == 0 and res.stdout.split() == ["1", "False", "True", "2", "True", "True", "True"], \
        res.stdout + res.stderr
