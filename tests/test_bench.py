"""The benchmark harness (rnnfast.bench): a smoke run, the ONNX weight conversion, the checks and statistics."""
import json
import os

import numpy as np
import pytest
from conftest import require_torch

import rnnfast
from rnnfast.bench import (compare, configs, engine_rnnfast, lm_script, main, memory, peer_onnx, peer_torch,
                           ragged, realistic, scaling, timing)


def require_onnxruntime():
    """Import onnx + onnxruntime, or skip; with RNNFAST_REQUIRE_TORCH=1 (CI) a missing one fails."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as exc:
        if os.environ.get("RNNFAST_REQUIRE_TORCH") == "1":
            pytest.fail(f"onnx/onnxruntime are required (RNNFAST_REQUIRE_TORCH=1): {exc}")
        pytest.skip("onnx/onnxruntime not installed")
    return onnxruntime


@pytest.fixture
def keep_threads():
    """main() sets every engine's thread count: restore them for the tests that follow."""
    n = rnnfast.get_num_threads()
    torch_n = peer_torch._import().get_num_threads() if peer_torch.version() else None
    yield
    rnnfast.set_num_threads(n)
    if torch_n is not None:
        peer_torch.set_threads(torch_n)


def _run(tmp_path, *extra):
    path = tmp_path / "bench.json"
    rc = main(["--quick", "--threads", "1", "--cells", "lstm", "--configs", "smoke", "--json", str(path), *extra])
    return rc, json.loads(path.read_text())


def test_smoke_run_checks_every_engine_before_timing(tmp_path, keep_threads, capsys):
    rc, data = _run(tmp_path, "--markdown", str(tmp_path / "bench.md"))
    assert rc == 0
    assert data["machine"]["threads"] == 1 and data["machine"]["cpu_model"]
    assert data["peak"]["gflops"] > 0 and data["peak"]["isa"] == rnnfast.cpu_info()["isa"]
    assert "matmul" not in data  # the numpy matmul row is informational and skipped by --quick
    for r in data["results"]:  # efficiency divides by the physical peak
        ours = r["engines"]["rnnfast"]
        assert ours["efficiency"] == pytest.approx(ours["gflops"] / data["peak"]["gflops"])
    assert {r["kind"] for r in data["results"]} == {"inference", "stream", "train"}
    for r in data["results"]:
        ours = r["engines"]["rnnfast"]
        assert ours["status"] == "ok", ours
        assert ours["check"] == {"reference": True} and ours["median_s"] > 0 and ours["gflops"] > 0
        for name, e in r["engines"].items():
            if name == "rnnfast" or e["status"] in ("not installed", "-"):
                continue
            assert e["status"] == "ok", (name, r["config"], e)
            assert e["check"]["ok"] and e["check"]["max_abs_diff"] <= e["check"]["tol"]
            assert e["speedup"] == pytest.approx(e["median_s"] / ours["median_s"])
        if r["kind"] == "train" and "torch" in r["engines"] and r["engines"]["torch"]["status"] == "ok":
            checked = r["engines"]["torch"]["check"]["outputs"]
            assert {"y", "grad_x", "grad:weight_hh_l0", "grad:bias_ih_l0"} <= set(checked)
    out = capsys.readouterr().out
    assert "smoke-train B=2 T=5 H=16" in out and "smoke-stream B=2 H=16" in out and "reference" in out
    assert "| config | cell | engine |" in (tmp_path / "bench.md").read_text()


def test_missing_peers_are_reported_not_fatal(tmp_path, keep_threads, monkeypatch):
    def missing():
        raise ImportError("pretend it is missing")

    monkeypatch.setattr(peer_torch, "_import", missing)
    monkeypatch.setattr(peer_onnx, "_import", missing)
    rc, data = _run(tmp_path, "--configs", "smoke-inference-B2-T5-H16")
    assert rc == 0
    engines = data["results"][0]["engines"]
    assert engines["torch"]["status"] == engines["onnxruntime"]["status"] == "not installed"
    assert engines["rnnfast"]["median_s"] > 0


def test_a_wrong_peer_is_flagged_as_mismatch(tmp_path, keep_threads, monkeypatch, capsys):
    require_torch()
    real = peer_torch.make_module

    def perturbed(cell, spec, weights):
        weights = {k: v + np.float32(0.05) for k, v in weights.items()}
        return real(cell, spec, weights)

    monkeypatch.setattr(peer_torch, "make_module", perturbed)
    rc, data = _run(tmp_path, "--configs", "smoke-train-B2-T5-H16", "--engines", "rnnfast,torch")
    assert rc == 1
    torch_entry = data["results"][0]["engines"]["torch"]
    assert torch_entry["status"] == "MISMATCH" and not torch_entry["check"]["ok"]
    assert "MISMATCH" in capsys.readouterr().out


@pytest.mark.parametrize("cell", configs.CELLS)
def test_onnx_conversion_matches_torch(cell):
    torch = require_torch()
    require_onnxruntime()
    torch.manual_seed(0)
    T, B, I, H = 5, 3, 4, 6
    module = getattr(torch.nn, peer_torch.MODULES[cell])(I, H)
    weights = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, I), dtype=np.float32)
    h0 = rng.standard_normal((1, B, H), dtype=np.float32)
    c0 = rng.standard_normal((1, B, H), dtype=np.float32)
    with torch.no_grad():
        ref = module(torch.from_numpy(x), (torch.from_numpy(h0), torch.from_numpy(c0)) if cell == "lstm"
                     else torch.from_numpy(h0))
    session = peer_onnx.make_session(peer_onnx.build_model(cell, weights, I, H), threads=1)
    feed = dict(X=x, initial_h=h0, **({"initial_c": c0} if cell == "lstm" else {}))
    got = session.run(None, feed)
    np.testing.assert_allclose(got[0][:, 0], ref[0].numpy(), atol=1e-5)
    states = ref[1] if cell == "lstm" else (ref[1],)
    for got_state, ref_state in zip(got[1:], states):
        np.testing.assert_allclose(got_state, ref_state.numpy(), atol=1e-5)


def test_onnx_gate_blocks_are_reordered():
    H = 2
    w = np.arange(4 * H * 3, dtype=np.float32).reshape(4 * H, 3)
    sd = dict(weight_ih_l0=w, weight_hh_l0=w[:, :2], bias_ih_l0=w[:, 0], bias_hh_l0=w[:, 1])
    W, R, B = peer_onnx.onnx_weights("lstm", sd, H)
    i, f, g, o = (w[k * H:(k + 1) * H] for k in range(4))
    np.testing.assert_array_equal(W[0], np.concatenate([i, o, f, g]))  # ONNX LSTM: i, o, f, c
    assert W.shape == (1, 4 * H, 3) and R.shape == (1, 4 * H, 2) and B.shape == (1, 8 * H)
    np.testing.assert_array_equal(B[0, 4 * H:], np.concatenate([i, o, f, g])[:, 1])  # then the recurrent biases
    r, z, n = (w[k * H:(k + 1) * H] for k in range(3))
    W, _, _ = peer_onnx.onnx_weights("gru", {k: v[:3 * H] for k, v in sd.items()}, H)
    np.testing.assert_array_equal(W[0], np.concatenate([z, r, n]))  # ONNX GRU: z, r, h


def test_flops_and_config_selection():
    spec = configs.select(["throughput-B64-T100-H512"])[0]
    assert configs.flops(spec, "lstm") == 2 * 100 * 64 * 4 * 512 * 1024
    train = configs.select(["train-B64-T100-H512"])[0]
    assert configs.flops(train, "gru") == 3 * configs.flops(configs.Spec("x", "x", "inference", 64, 100, 512), "gru")
    stream = configs.select(["stream"])[0]
    assert configs.flops(stream, "rnn") == 2 * 1 * 256 * 512 and stream.steps_per_call == 100
    assert [s.name for s in configs.select(["latency", "latency-B1-T100-H512"])] == \
        ["latency-B1-T100-H256", "latency-B1-T100-H512"]
    with pytest.raises(ValueError, match="--configs"):
        configs.select(["nope"])


def test_compare_scales_by_the_reference_and_reports_the_worst_output():
    ref = dict(y=np.ones((2, 3), np.float32), grad=np.full(4, 100.0, np.float32))
    close = dict(y=ref["y"] + 1e-6, grad=ref["grad"] + 1e-3)  # 1e-3 on values of 100 is 1e-5 relative
    res = compare.compare(ref, close, 1e-4)
    assert res["ok"] and res["worst_output"] == "grad"
    far = dict(y=ref["y"] + 1e-2, grad=ref["grad"])
    res = compare.compare(ref, far, 1e-4)
    assert not res["ok"] and res["worst_output"] == "y" and res["max_abs_diff"] == pytest.approx(1e-2, rel=1e-3)
    assert not compare.compare(ref, dict(y=np.ones((3, 2), np.float32)), 1e-4)["ok"]
    assert not compare.compare(ref, dict(y=np.full((2, 3), np.nan, np.float32)), 1e-4)["ok"]


def test_measure_interleaves_and_summarizes():
    order = []

    class Case:
        def __init__(self, name):
            self.name = name

        def run(self):
            order.append(self.name)

    res = timing.measure({"a": Case("a"), "b": Case("b")}, repeat=4, warmup=1, min_sample_time=0, gap=0)
    assert order == ["a", "b"] + ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert len(res["a"]["samples_s"]) == 4 and res["a"]["min_s"] <= res["a"]["median_s"] <= res["a"]["max_s"]
    s = timing.summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s["median_s"] == 3.0 and s["q1_s"] == 2.0 and s["q3_s"] == 4.0


def test_linear_fit_tells_linear_from_quadratic():
    ts = [25, 50, 100, 200, 400]
    assert scaling.linear_fit(ts, [0.1 + 0.01 * t for t in ts])["linear"]
    assert not scaling.linear_fit(ts, [1e-4 * t * t for t in ts])["linear"]


def test_memory_probe_in_a_child_process():
    spec, = configs.select(["smoke-train-B2-T5-H16"])
    assert spec.kind == "train"
    res = memory._spawn("rnnfast", "lstm", spec, 1)
    assert "peak_mib" in res, res
    assert res["peak_mib"] >= 0 and res["method"]


def test_a_case_that_raises_while_timed_is_reported_and_the_others_go_on():
    class Ok:
        def run(self):
            pass

    class Breaks:
        calls = 0

        def run(self):
            Breaks.calls += 1
            if Breaks.calls > 2:
                raise RuntimeError("kernel fell over")

    res = timing.measure({"ok": Ok(), "bad": Breaks()}, repeat=3, warmup=1, min_sample_time=0, gap=0)
    assert res["bad"] == {"error": "RuntimeError: kernel fell over"}
    assert len(res["ok"]["samples_s"]) == 3


def test_scaling_study_runs_and_reports_the_t_fit(tmp_path, keep_threads, capsys):
    path = tmp_path / "scaling.json"
    assert main(["--quick", "--scaling", "--threads", "1", "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert data["results"] == []  # --scaling alone runs only the study
    sweeps = data["scaling"]["sweeps"]
    assert [r["T"] for r in sweeps["T"]["rows"]] == list(scaling.QUICK_SWEEPS["T"][1])
    assert {"per_step_s", "r2", "linear"} <= set(sweeps["T"]["fit"])
    assert all(r["median_s"] > 0 for rows in data["scaling"]["threads"].values() for r in rows)
    assert "time vs T:" in capsys.readouterr().out


def _gemm_gflops(n: int, repeat: int = 5) -> float:
    import time

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    c = np.empty((n, n), np.float32)
    rnnfast._core.gemm(a, b, c)
    best = min(_timed(lambda: rnnfast._core.gemm(a, b, c)) for _ in range(repeat))
    return 2.0 * n ** 3 / best / 1e9


def _timed(f) -> float:
    import time

    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


@pytest.fixture
def keep_isa():
    isa, n = rnnfast.cpu_info()["isa"], rnnfast.get_num_threads()
    yield
    rnnfast.set_isa(isa)
    rnnfast.set_num_threads(n)


@pytest.mark.parametrize("isa", rnnfast.cpu_info()["isas_available"])
def test_physical_peak_is_positive_bounds_our_gemm_and_scales_sanely(isa, keep_isa):
    """A measuring device, not a speed claim: the bounds are loose enough for a shared machine, tight
    enough that a wrong FLOP count (2x off), a loop that touches memory or serialised threads would show."""
    rnnfast.set_isa(isa)
    rnnfast.set_num_threads(1)
    one = max(rnnfast._core.peak_gflops(1, 0.01) for _ in range(8))
    assert one > 0
    # the best of five 1-thread GEMMs of our own kernels stays below the 1-thread peak
    assert _gemm_gflops(384) < 1.05 * one
    # two threads do at most twice one thread's work (always), and clearly more than one thread's
    # share of it when the machine lets them run at once: a few tries, since others share the cores
    load = timing.OtherLoad().start()
    ratios = []
    for _ in range(5):
        ratios.append(max(rnnfast._core.peak_gflops(2, 0.01) for _ in range(8)) / one)
        assert ratios[-1] < 2.3, ratios
        if ratios[-1] > 0.6:
            return
    other = load.stop()
    if other is not None and other > 0.5:
        pytest.skip(f"other processes used {100 * other:.0f}% of the CPUs: 2 threads could not run at once "
                    f"(2-thread/1-thread peak {ratios})")
    pytest.fail(f"2-thread peak / 1-thread peak {ratios} on a machine with other load {other}")


def test_wider_vectors_have_a_higher_peak(keep_isa):
    isas = rnnfast.cpu_info()["isas_available"]
    if len(isas) < 2:
        pytest.skip("only one ISA on this CPU")
    peaks = {}
    for isa in isas:
        rnnfast.set_isa(isa)
        peaks[isa] = max(rnnfast._core.peak_gflops(1, 0.01) for _ in range(8))
    # generic (4 lanes, no FMA) < avx2 (8 lanes, FMA); avx512 is at least avx2 (equal on 256-bit datapaths)
    assert peaks["avx2"] > 1.5 * peaks["generic"], peaks
    if "avx512" in peaks:
        assert peaks["avx512"] > 0.8 * peaks["avx2"], peaks


@pytest.mark.parametrize("threads, seconds", [(0, 0.01), (1000, 0.01), (1, 0.0), (1, 11.0)])
def test_peak_rejects_bad_arguments(threads, seconds):
    with pytest.raises(ValueError, match="threads|seconds"):
        rnnfast._core.peak_gflops(threads, seconds)


def test_realistic_group_runs_every_case_with_its_target(tmp_path, keep_threads, capsys):
    path = tmp_path / "real.json"
    assert main(["--quick", "--threads", "2", "--configs", "realistic", "--json", str(path),
                 "--markdown", str(tmp_path / "real.md")]) == 0
    data = json.loads(path.read_text())
    assert data["results"] == [] and data["peak"]["gflops"] > 0
    rows = {r["case"]: r for r in data["realistic"]["rows"]}
    assert list(rows) == list(realistic.CASES)
    for r in rows.values():
        assert r["status"] == "ok", r
        assert r["comparisons"] and r["values"]
        for c in r["comparisons"]:
            if c["ratio"] is None:  # a peer that is not installed
                continue
            assert c["ratio"] > 0 and c["target"][:2] in (">=", "<=") and isinstance(c["met"], bool)
    charlm = rows["charlm"]["values"]
    assert charlm["default env"] > 0 and charlm["OPENBLAS_NUM_THREADS=1"] > 0
    assert "OPENBLAS_NUM_THREADS" not in os.environ  # only the child process had it
    assert rows["stream-load"]["check"]["scaled_diff"] == 0.0  # deterministic for any thread count
    out = capsys.readouterr().out
    assert "realistic cases" in out and "target >= 1.4x" in out and "target <= 1.2x" in out
    assert "## Realistic cases" in (tmp_path / "real.md").read_text()


def test_realistic_checks_catch_a_wrong_peer(tmp_path, keep_threads, monkeypatch, capsys):
    require_torch()
    real = peer_torch.make_module

    def perturbed(cell, spec, weights):
        return real(cell, spec, {k: v + np.float32(0.05) for k, v in weights.items()})

    monkeypatch.setattr(peer_torch, "make_module", perturbed)
    row = realistic.next_to_ort_pool(realistic.QUICK["pool"], 1, ["rnnfast", "torch"])
    assert row["status"] == "MISMATCH" and row["check"]["failed"] == ["torch"]
    result = dict(results=[], realistic=dict(rows=[row]))
    from rnnfast.bench import report
    assert report.mismatches(result) and "ort-pool" in report.mismatches(result)[0]


def test_lm_script_check_catches_a_one_percent_learning_rate_error(keep_threads):
    require_torch()
    cfg = dict(realistic.QUICK["lm"], threads=1, steps=1, warmup=0)
    cfg.pop("rounds")
    ours = lm_script.run("rnnfast", cfg)["check_losses"]
    same = lm_script.run("torch", cfg)["check_losses"]
    wrong = lm_script.run("torch", dict(cfg, lr=cfg["lr"] * 1.01))["check_losses"]
    assert realistic.loss_check(ours, same)["ok"]
    assert not realistic.loss_check(ours, wrong)["ok"]
    assert not realistic.loss_check(ours, same[:-1])["ok"]


def test_a_failing_child_is_an_error_row_not_a_number(keep_threads, monkeypatch):
    def child(cmd, env, timeout=900):
        if "rnnfast" in cmd:
            raise RuntimeError("lm_script.py rnnfast ... exited with 1: Segmentation fault")
        return json.dumps(dict(engine="torch", check_losses=[1.0], step_s=[0.1]))

    monkeypatch.setattr(realistic, "_run_child", child)
    args = type("Args", (), dict(quick=True, threads=1, engines=["rnnfast", "torch"]))()
    monkeypatch.setattr(realistic, "CASES", ("lm-train",))
    row, = realistic.run(args)["rows"]
    assert row["status"] == "error" and "Segmentation fault" in row["details"]["error"]
    assert realistic.mismatches(dict(rows=[row])) == []  # an error, reported as such, not a mismatch


def test_children_get_the_environment_the_process_started_with(monkeypatch):
    monkeypatch.setenv("RNNFAST_BENCH_SET_LATER", "1")  # as an import setting a variable would
    env = realistic._child_env(OPENBLAS_NUM_THREADS="1")
    assert "RNNFAST_BENCH_SET_LATER" not in env and env["OPENBLAS_NUM_THREADS"] == "1"
    assert env["PATH"] == os.environ["PATH"] and "OPENBLAS_NUM_THREADS" not in realistic._child_env()


def test_busy_processes_are_killed():
    with realistic.BusyProcesses(2) as busy:
        procs = list(busy.procs)
        assert all(p.poll() is None for p in procs)
    assert all(p.poll() is not None for p in procs)


def test_shape_runs_any_input_size_and_checks_the_peers(tmp_path, keep_threads):
    path = tmp_path / "shape.json"
    assert main(["--quick", "--threads", "1", "--shape", "gru:3:4:7:10", "--shape", "rnn:2:3:5:6:stream",
                 "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    got = [(r["config"], r["cell"], r["kind"], r["I"], r["H"]) for r in data["results"]]
    assert got == [("shape-inference-B3-T4-I7-H10", "gru", "inference", 7, 10),
                   ("shape-train-B3-T4-I7-H10", "gru", "train", 7, 10),
                   ("shape-stream-B2-T3-I5-H6", "rnn", "stream", 5, 6)]
    assert data["results"][0]["flops"] == 2 * 4 * 3 * 3 * 10 * (7 + 10)
    for r in data["results"]:
        assert r["engines"]["rnnfast"]["status"] == "ok"
        for name, e in r["engines"].items():
            assert e["status"] in ("ok", "-", "not installed"), (name, e)


def test_variant_cells_run_on_rnnfast_and_onnxruntime_only(tmp_path, keep_threads):
    """--cells takes the cell variants: rnnfast and ONNX Runtime (which has them natively) agree,
    the torch engines show '-'; a reverse layer has no stream."""
    rc, data = _run(tmp_path, "--cells", "lstm_peephole,gru_reset_before,lstm_reverse")
    assert rc == 0
    assert {r["cell"] for r in data["results"]} == {"lstm_peephole", "gru_reset_before", "lstm_reverse"}
    for r in data["results"]:
        reverse_stream = r["cell"] == "lstm_reverse" and r["kind"] == "stream"
        for name, e in r["engines"].items():
            if name in ("torch", "rnnfast.torch") or reverse_stream or (name == "onnxruntime" and r["kind"] == "train"):
                assert e["status"] in ("-", "not installed"), (name, r["cell"], r["kind"], e)
            else:
                assert e["status"] in ("ok", "not installed"), (name, r["cell"], r["kind"], e)
    assert data["results"][0]["flops"] == configs.flops(configs.select(["smoke-inference-B2-T5-H16"])[0], "lstm")


@pytest.mark.parametrize("text", ["lstm:1:2:3", "cnn:1:2:3:4", "lstm:1:0:3:4", "lstm:1:2:x:4", "lstm:1:2:3:4:fast"])
def test_bad_shape_is_a_clear_error(text, capsys):
    with pytest.raises(SystemExit):
        main(["--shape", text])
    err = capsys.readouterr().err
    assert "--shape: expected CELL:B:T:I:H" in err and repr(text) in err


def _saved_language_model(path):
    from rnnfast.checkpoint import save_checkpoint
    from rnnfast.models import LanguageModel

    model = LanguageModel(11, 6, 8, num_layers=2, cell="gru", seed=3)
    save_checkpoint(path, model, extra={"config": model.config})
    return model


def test_model_file_runs_its_recurrent_stack_with_its_own_weights(tmp_path, keep_threads):
    pytest.importorskip("safetensors")
    ckpt = tmp_path / "lm.ckpt"
    model = _saved_language_model(ckpt)
    path = tmp_path / "model.json"
    assert main(["--quick", "--threads", "1", "--model", str(ckpt), "--model-shape", "3:4", "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert [(r["kind"], r["cell"], r["I"], r["H"], r["layers"]) for r in data["results"]] == \
        [("inference", "gru", 6, 8, 2), ("train", "gru", 6, 8, 2)]
    for r in data["results"]:
        assert r["weights_from"] == str(ckpt)
        assert r["engines"]["onnxruntime"]["status"] in ("-", "not installed")  # one layer only
        if r["engines"]["torch"]["status"] != "not installed":
            assert r["engines"]["torch"]["status"] == "ok" and r["engines"]["torch"]["check"]["ok"]
    # the weights are the file's: the rnnfast case reproduces the saved model's own recurrent output
    from rnnfast.bench import saved_model
    spec, cell = saved_model.specs(str(ckpt), 3, 4)[0]
    x = configs.make_data(spec)["x"]
    case = engine_rnnfast.make_case(cell, spec, saved_model.weights(spec), dict(x=x, g=None), 1)
    model.rnn.batch_first = False
    model.eval()
    np.testing.assert_array_equal(case.outputs()["y"], model.rnn(x)[0])


def test_model_file_bidirectional_layer_and_a_wrong_peer(tmp_path, keep_threads, monkeypatch):
    require_torch()
    pytest.importorskip("safetensors")
    from rnnfast.checkpoint import save_weights
    layer = rnnfast.nn.LSTM(5, 7, 2, bidirectional=True)
    save_weights(tmp_path / "bi.safetensors", layer)
    path = tmp_path / "bi.json"
    argv = ["--quick", "--threads", "1", "--model", str(tmp_path / "bi.safetensors"), "--model-shape", "2:3",
            "--engines", "rnnfast,torch", "--json", str(path)]
    assert main(argv) == 0
    rows = json.loads(path.read_text())["results"]
    assert all(r["bidirectional"] and r["engines"]["torch"]["status"] == "ok" for r in rows)
    assert rows[0]["flops"] == 2 * 2 * 3 * 2 * 4 * 7 * (5 + 7) + 2 * 2 * 3 * 2 * 4 * 7 * (14 + 7)
    real = peer_torch.make_module
    monkeypatch.setattr(peer_torch, "make_module", lambda cell, spec, w: real(
        cell, spec, {k: v * np.float32(1.01) if k == "weight_hh_l1_reverse" else v for k, v in w.items()}))
    assert main(argv) == 1
    rows = json.loads(path.read_text())["results"]
    assert all(r["engines"]["torch"]["status"] == "MISMATCH" for r in rows)


@pytest.mark.parametrize("content, message", [(None, "no such file"), (b"not a model", "not an rnnfast checkpoint"),
                                              ("linear", "no recurrent layer")])
def test_bad_model_file_is_a_clear_error(tmp_path, content, message, capsys):
    path = tmp_path / "m.bin"
    if content == "linear":
        pytest.importorskip("safetensors")
        from rnnfast.checkpoint import save_weights
        save_weights(path, rnnfast.nn.Linear(3, 4))
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(SystemExit):
        main(["--model", str(path)])
    err = capsys.readouterr().err
    assert f"--model {path}" in err and message in err


def test_ragged_group_checks_and_times_four_ways_to_run_a_ragged_batch(tmp_path, keep_threads, capsys):
    path = tmp_path / "ragged.json"
    assert main(["--quick", "--threads", "1", "--configs", "ragged", "--json", str(path)]) == 0
    rows = json.loads(path.read_text())["ragged"]["rows"]
    assert [r["case"] for r in rows] == ["train-uniform", "inference-uniform", "train-of", "inference-of"]
    for r in rows:
        assert r["status"] == "ok" and r["check"]["ok"], r
        names = {"rnnfast lengths", "rnnfast no lengths"} | ({"torch packed", "torch padded"}
                                                             if peer_torch.version() else set())
        assert names <= set(r["values"]) and all(r["values"][n] > 0 for n in names)
        assert [c["target"] for c in r["comparisons"]][:2] == (["<= 0.65x", "<= 0.35x"] if "uniform" in r["case"]
                                                               else ["-", "-"])
        assert 0 < r["details"]["valid_fraction"] <= 1
    assert "ragged batches" in capsys.readouterr().out


def test_ragged_lengths():
    u = ragged.uniform_lengths(1000, 100)
    assert u.min() >= 10 and u.max() <= 100 and 50 < u.mean() < 60
    c = ragged.corpus_lengths(64, 100, chars=50_000)
    assert c.shape == (64,) and c.min() >= 1 and c.max() <= 100
    assert np.array_equal(c, ragged.corpus_lengths(64, 100, chars=50_000))  # fixed seed: the same batch


def test_ragged_check_catches_a_wrong_peer(keep_threads, monkeypatch):
    require_torch()
    real = peer_torch.make_module
    monkeypatch.setattr(peer_torch, "make_module", lambda cell, spec, w: real(
        cell, spec, {k: v * np.float32(1.01) if k == "bias_hh_l0" else v for k, v in w.items()}))
    size = ragged.QUICK
    row = ragged.measure_batch("train", ragged.uniform_lengths(size["B"], size["T"]), size, 1, ["torch"], "x", True)
    assert row["status"] == "MISMATCH" and row["check"]["failed"] == ["torch packed", "torch padded"]


def test_the_drop_in_is_an_engine_but_never_the_faster_peer():
    from rnnfast.bench import report, runner

    assert "rnnfast.torch" in runner.ENGINES and "rnnfast.torch" in runner.FACTORIES
    row = dict(label="train", cell="lstm", engines={
        "rnnfast": dict(status="ok"), "torch": dict(status="ok", speedup=1.4),
        "rnnfast.torch": dict(status="ok", speedup=1.01)})
    (s,) = report.speedups([row])
    assert s["vs"]["rnnfast.torch"] == 1.01 and s["best"] == 1.4


def test_reduced_precision_engines_are_checked_and_compared(tmp_path, keep_threads, capsys):
    """int8 / bf16 rows: checked against float32 rnnfast within their format's bound, training refused,
    and a table of speed-ups over the faster float32 engine."""
    require_torch()
    require_onnxruntime()
    rc, data = _run(tmp_path, "--engines", "rnnfast,onnxruntime,rnnfast-int8,rnnfast-bf16,torch-int8,onnxruntime-int8",
                    "--markdown", str(tmp_path / "bench.md"))
    assert rc == 0
    by_kind = {r["kind"]: r["engines"] for r in data["results"]}
    for name in ("rnnfast-int8", "rnnfast-bf16", "onnxruntime-int8"):
        for kind in ("inference", "stream"):
            e = by_kind[kind][name]
            assert e["status"] == "ok" and e["median_s"] > 0, (name, kind, e)
            assert 0 < e["check"]["scaled_diff"] <= e["check"]["tol"]
        assert by_kind["train"][name]["status"] == "-"
    assert by_kind["inference"]["torch-int8"]["status"] == "ok"
    assert by_kind["inference"]["rnnfast-int8"]["check"]["tol"] == 3e-2
    assert by_kind["inference"]["rnnfast-bf16"]["check"]["tol"] == 1e-2
    out = capsys.readouterr().out
    assert "reduced precision: speed-up over the faster float32 engine" in out
    assert "## Reduced precision vs the faster float32 engine" in (tmp_path / "bench.md").read_text()
    assert "vs rnnfast-int8" not in out  # not a float32 peer of the main summary
