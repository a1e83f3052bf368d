"""`rnnfast bench --configs realistic`: the cases users meet outside a tight benchmark loop.

Each case measures rnnfast where users run it (the default environment, calls after idle gaps,
next to another engine's thread pool, on a loaded machine) and prints its target next to the
measured ratio. This process never changes its own environment; child processes may (the
OPENBLAS_NUM_THREADS=1 comparison run), and the busy processes of the last case are started and
killed here. Every engine's output is checked against rnnfast's before anything is timed.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

from . import compare, configs, engine_rnnfast, lm_script, peer_onnx, peer_torch, timing
from . import ratio_rows as rr
from .configs import Spec
from .engine_rnnfast import WithThreads

# Sizes of the full run and of --quick (tiny shapes and few repetitions, for the tests).
FULL = dict(
    lm=dict(vocab=96, emb=64, hidden=256, layers=2, batch=32, seq=64, lr=2e-3, check_steps=5, warmup=3, steps=20,
            rounds=2),
    charlm=dict(args=["--time-budget", "12"], rounds=2),
    idle=dict(B=1, T=100, H=256, calls=20, rounds=3, gap=0.02),
    pool=dict(B=64, T=100, H=512, rounds=8),
    stream=dict(H=256, steps=100, repeat=15, busy=2),
)
QUICK = dict(
    lm=dict(vocab=20, emb=8, hidden=16, layers=2, batch=4, seq=8, lr=2e-3, check_steps=5, warmup=1, steps=3, rounds=1),
    charlm=dict(args=["--steps", "6", "--hidden", "16", "--layers", "1", "--embedding", "8", "--seq-len", "8",
                      "--batch-size", "4"], rounds=1, corpus_chars=20_000),
    idle=dict(B=1, T=10, H=16, calls=3, rounds=1, gap=0.02),
    pool=dict(B=4, T=10, H=16, rounds=3),
    stream=dict(H=16, steps=10, repeat=3, busy=2),
)
LOSS_TOLERANCE = 1e-5  # relative, on the first losses of the LM script: float32 rounding gives ~1e-7
TOKENS_RE = re.compile(r"speed: ([\d,]+) tokens/s")


def start_environment() -> dict:
    """The environment this process was started with (Linux: /proc/self/environ, which later changes to
    os.environ do not touch), else os.environ. Children get this, not what imports here set since."""
    try:
        with open("/proc/self/environ", "rb") as f:
            items = [item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item]
        return {os.fsdecode(k): os.fsdecode(v) for k, v in items}
    except OSError:
        return dict(os.environ)


def _child_env(**extra) -> dict:
    """The user's default environment plus extra variables, for one child only (rnnfast importable)."""
    pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(start_environment(), **extra)
    env["PYTHONPATH"] = os.pathsep.join([pkg_root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def _run_child(cmd: list, env: dict, timeout: float = 900) -> str:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited with {done.returncode}: {tail}")
    return done.stdout


# ---------------------------------------------------------------------------------------------
def loss_check(ours: list, theirs: list) -> dict:
    """The LM script's check: the first losses (forward, backward and Adam from the same start) agree."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if ours.shape != theirs.shape:
        return dict(ok=False, error=f"{len(theirs)} losses, expected {len(ours)}", tol=LOSS_TOLERANCE)
    diff = float(np.max(np.abs(ours - theirs) / np.maximum(1.0, np.abs(ours))))
    return dict(ok=diff <= LOSS_TOLERANCE, scaled_diff=diff, tol=LOSS_TOLERANCE, what="first losses")


def lm_training(size: dict, threads: int, engines: list) -> dict:
    """The user's own script (lm_script.py), one child process per engine, alternating."""
    cfg = dict(size, threads=threads)
    rounds = cfg.pop("rounds")
    runs: dict = {e: [] for e in ("rnnfast", "torch") if e in engines}
    errors = {}
    for _ in range(rounds):
        for engine in list(runs):
            try:
                out = _run_child([sys.executable, lm_script.__file__, engine, json.dumps(cfg)], _child_env())
                runs[engine].append(json.loads(out.strip().splitlines()[-1]))
            except (RuntimeError, ValueError, IndexError, subprocess.SubprocessError) as exc:
                if engine == "rnnfast":
                    raise  # the row becomes an error, never a row without rnnfast's number
                errors[engine] = "not installed" if "ModuleNotFoundError" in str(exc) else str(exc)
                runs.pop(engine)
    tokens = cfg["batch"] * cfg["seq"]
    rate = {e: tokens / float(np.median([t for r in rs for t in r["step_s"]])) for e, rs in runs.items()}
    check = dict(ok=True)
    if "rnnfast" in runs and "torch" in runs:
        check = loss_check(runs["rnnfast"][0]["check_losses"], runs["torch"][0]["check_losses"])
    values = {f"{e} (default env)": v for e, v in rate.items()}
    values.update({e: s for e, s in errors.items()})
    shape = f"V={cfg['vocab']} E={cfg['emb']} B={cfg['batch']} T={cfg['seq']}"
    title = f"LM script: Embedding -> {cfg['layers']}-layer LSTM {cfg['hidden']} -> Linear, Adam, {shape}"
    vs_torch = rr.ratio(rate.get("rnnfast"), rate.get("torch"))
    return rr.row("lm-train", title, "tokens/s", values,
                  [rr.comparison("rnnfast / torch tokens/s", vs_torch, ">=", 1.4)], check, rounds=rounds)


def _corpus_file(chars: int, folder: str) -> str:
    """A small text file for the quick run (the full run trains on charlm's default corpus)."""
    from ..charlm import stdlib_corpus

    path = os.path.join(folder, "corpus.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(stdlib_corpus(chars)[0][:chars])
    return path


def charlm_training(size: dict, threads: int) -> dict:
    """`rnnfast charlm train` as whole processes: the default environment vs OPENBLAS_NUM_THREADS=1."""
    variants = {"default env": {}, "OPENBLAS_NUM_THREADS=1": dict(OPENBLAS_NUM_THREADS="1")}
    rates: dict = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="rnnfast-bench-charlm-") as tmp:
        files = [_corpus_file(size["corpus_chars"], tmp)] if size.get("corpus_chars") else []
        for _ in range(size["rounds"]):
            for name, extra in variants.items():
                cmd = [sys.executable, "-m", "rnnfast.cli", "charlm", "train", *files, *size["args"], "--threads",
                       str(threads), "--sample-len", "0", "--eval-interval", "1000000", "--log-interval", "1000000",
                       "--checkpoint-dir", os.path.join(tmp, "ckpt")]
                out = _run_child(cmd, _child_env(**extra))
                found = TOKENS_RE.search(out)
                if not found:
                    raise RuntimeError(f"charlm train printed no 'speed: N tokens/s' line: {out[-300:]!r}")
                rates[name].append(float(found.group(1).replace(",", "")))
    med = {name: float(np.median(r)) for name, r in rates.items()}
    vs_one_blas = rr.ratio(med["default env"], med["OPENBLAS_NUM_THREADS=1"])
    return rr.row("charlm", "rnnfast charlm train (" + " ".join(size["args"]) + ")", "tokens/s", med,
                  [rr.comparison("default / OPENBLAS_NUM_THREADS=1", vs_one_blas, ">=", 0.95)], dict(ok=True),
                  runs=rates, parent_openblas_threads=start_environment().get("OPENBLAS_NUM_THREADS"))


def _peer_cases(spec: Spec, weights, data, threads: int, engines: list) -> tuple[dict, dict]:
    """The peers as users have them: ONNX Runtime with its default settings (its pool spins after run())."""
    cases, missing = {}, {}
    if "torch" in engines:
        try:
            cases["torch"] = peer_torch.make_case("lstm", spec, weights, data, threads)
        except ImportError as exc:
            missing["torch"] = f"not installed ({exc})"
    if "onnxruntime" in engines:
        try:
            peer_onnx._import()
            cases["onnxruntime"] = peer_onnx.InferenceCase("lstm", spec, weights, data, threads, stop_spinning=False)
        except ImportError as exc:
            missing["onnxruntime"] = f"not installed ({exc})"
    return cases, missing


def idle_gap(size: dict, threads: int, engines: list) -> dict:
    """One call every `gap` seconds, as a server answering at a steady rate: each engine serves a
    block of `calls` calls in a row, each after an idle gap; the blocks rotate over `rounds`."""
    spec = Spec("realistic-idle", "realistic", "inference", size["B"], size["T"], size["H"])
    weights, _ = engine_rnnfast.shared_weights("lstm", spec)
    data = configs.make_data(spec)
    ours = engine_rnnfast.InferenceCase("lstm", spec, weights, data, threads)
    cases = {"rnnfast": WithThreads(ours, threads), "rnnfast 1 thread": WithThreads(ours, 1)}
    peers, missing = _peer_cases(spec, weights, data, threads, [e for e in engines if e == "onnxruntime"])
    cases.update(peers)
    check = compare.compare_cases(cases)
    samples: dict = {n: [] for n in cases}
    names = list(cases)
    for r in range(size["rounds"]):
        for name in names[r % len(names):] + names[:r % len(names)]:
            for _ in range(size["calls"]):
                time.sleep(size["gap"])
                t0 = time.perf_counter()
                cases[name].run()
                samples[name].append(time.perf_counter() - t0)
    engine_rnnfast.set_threads(threads)
    med = {n: float(np.median(s)) for n, s in samples.items()}
    ours_t, own1 = med["rnnfast"], med["rnnfast 1 thread"]
    values = dict(med, **missing)
    title = f"one call every {size['gap'] * 1e3:.0f} ms, LSTM B={spec.B} T={spec.T} H={spec.H}"
    return rr.row("idle-gap", title, "s", values,
                  [rr.comparison("rnnfast / own 1-thread time", rr.ratio(ours_t, own1), "<=", 1.1),
                   rr.comparison("onnxruntime / rnnfast time", rr.ratio(med.get("onnxruntime"), ours_t), ">=", 1.5)],
                  check, calls=size["calls"] * size["rounds"])


def next_to_ort_pool(size: dict, threads: int, engines: list) -> dict:
    """Each timed call right after an (untimed) call of an ONNX Runtime session with its default, spinning
    pool: ORT and the engine timed run in the same process one after the other, never at once."""
    spec = Spec("realistic-pool", "realistic", "inference", size["B"], size["T"], size["H"])
    weights, _ = engine_rnnfast.shared_weights("lstm", spec)
    data = configs.make_data(spec)
    cases = {"rnnfast": WithThreads(engine_rnnfast.InferenceCase("lstm", spec, weights, data, threads), threads)}
    peers, missing = _peer_cases(spec, weights, data, threads, engines)
    cases.update(peers)
    check = compare.compare_cases(cases)
    other = peers.get("onnxruntime")
    samples: dict = {n: [] for n in cases}
    names = list(cases)
    for k in range(size["rounds"]):
        for name in names[k % len(names):] + names[:k % len(names)]:
            if other is not None:
                other.run()
            t0 = time.perf_counter()
            cases[name].run()
            samples[name].append(time.perf_counter() - t0)
    med = {n: float(np.median(s)) for n, s in samples.items()}
    ours = med["rnnfast"]
    return rr.row("ort-pool", f"inference next to ORT's spinning pool, LSTM B={spec.B} T={spec.T} H={spec.H}", "s",
                  dict(med, **missing),
                  [rr.comparison("torch / rnnfast time", rr.ratio(med.get("torch"), ours), ">=", 1.0),
                   rr.comparison("onnxruntime / rnnfast time", rr.ratio(med.get("onnxruntime"), ours), ">=", 1.0)],
                  check, rounds=size["rounds"], ort_present=other is not None)


class BusyProcesses:
    """`count` child processes, each spinning on a core until the with-block ends (then killed)."""

    def __init__(self, count: int):
        self.count, self.procs = count, []

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.count)]
        time.sleep(0.2)  # let them start spinning
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
        self.procs = []


def stream_under_load(size: dict, threads: int, busy: int | None = None) -> dict:
    """Stream steps (B=1) while other processes keep the cores busy: rnnfast's thread count vs 1 thread."""
    spec = Spec("realistic-stream", "realistic", "stream", 1, size["steps"], size["H"])
    weights, _ = engine_rnnfast.shared_weights("lstm", spec)
    data = configs.make_data(spec)
    cases = {}
    for name, n in (("rnnfast", threads), ("rnnfast 1 thread", 1)):  # a stream takes its thread count when made
        engine_rnnfast.set_threads(n)
        cases[name] = WithThreads(engine_rnnfast.StreamCase("lstm", spec, weights, data, n), n)
    check = compare.compare_cases(cases)
    busy = size["busy"] if busy is None else busy
    with BusyProcesses(busy):
        stats = timing.measure(cases, size["repeat"], warmup=1, min_sample_time=0.0, steps_per_call=spec.T, gap=0.0)
    engine_rnnfast.set_threads(threads)
    med = {n: st["median_s"] for n, st in stats.items()}
    vs_one = rr.ratio(med["rnnfast"], med["rnnfast 1 thread"])
    return rr.row("stream-load", f"stream step LSTM B=1 H={spec.H} with {busy} busy processes", "s per step", med,
                  [rr.comparison("rnnfast / own 1-thread step", vs_one, "<=", 1.2)], check, busy_processes=busy)


CASES = ("lm-train", "charlm", "idle-gap", "ort-pool", "stream-load")


def run(args) -> dict:
    size = QUICK if args.quick else FULL
    rows = []
    for case in CASES:
        t0 = time.perf_counter()
        try:
            if case == "lm-train":
                row = lm_training(size["lm"], args.threads, args.engines)
            elif case == "charlm":
                row = charlm_training(size["charlm"], args.threads)
            elif case == "idle-gap":
                row = idle_gap(size["idle"], args.threads, args.engines)
            elif case == "ort-pool":
                row = next_to_ort_pool(size["pool"], args.threads, args.engines)
            else:
                row = stream_under_load(size["stream"], args.threads)
        except Exception as exc:  # noqa: BLE001 - one broken case must not stop the others
            row = rr.error_row(case, exc)
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        print(f"[realistic] {case}: {row['status']} in {row['seconds']:.0f}s", file=sys.stderr, flush=True)
    return dict(threads=args.threads, quick=args.quick, rows=rows)


def print_table(res: dict, out) -> None:
    rr.print_rows(f"realistic cases ({res['threads']} threads for every engine; ratios of medians, each "
                          "with its target)", res["rows"], out)


def markdown_lines(res: dict) -> list[str]:
    return rr.markdown_lines("Realistic cases", f"{res['threads']} threads for every engine; ratios of "
                                     "medians.", res["rows"])


def mismatches(res: dict) -> list[str]:
    return rr.mismatches("realistic", res["rows"])
