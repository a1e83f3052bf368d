"""`rnnfast bench`: argument parsing and the run of every (configuration, cell) across the engines."""
from __future__ import annotations

import argparse
import sys

from . import compare, configs, engine_dropin, engine_rnnfast, peer_onnx, peer_torch, reduced, report, timing
from .configs import Spec, Unsupported

DEFAULT_ENGINES = ("rnnfast", "torch", "onnxruntime", "rnnfast.torch")  # the last: our kernels behind torch.autograd
ENGINES = DEFAULT_ENGINES + reduced.ENGINES  # int8 / bfloat16 engines: opt-in
FACTORIES = {"rnnfast": engine_rnnfast.make_case, "torch": peer_torch.make_case,
             "onnxruntime": peer_onnx.make_case, "rnnfast.torch": engine_dropin.make_case, **reduced.FACTORIES}


def _csv(value: str) -> list[str]:
    return [v for v in value.replace(",", " ").split() if v]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="rnnfast bench", description="Benchmark rnnfast's RNN, LSTM and GRU against "
                                "PyTorch and ONNX Runtime in one process, with equal thread counts.")
    p.add_argument("--threads", type=int, default=2, help="threads for every engine (default 2)")
    p.add_argument("--cells", type=_csv, default=list(configs.CELLS), help="comma-separated: rnn,lstm,gru, or the variants "
                   + ",".join(configs.VARIANT_CELLS) + " (rnnfast engine only)")
    p.add_argument("--configs", type=_csv, default=None,
                   help=f"comma-separated groups {list(configs.DEFAULT_GROUPS)}, exact names like "
                        f"train-B64-T100-H512, or {list(configs.OTHER_GROUPS)} (default: the first four groups)")
    p.add_argument("--shape", action="append", default=[], metavar="CELL:B:T:I:H[:KIND]",
                   help="any shape, e.g. lstm:64:100:128:256 (inference and train; KIND picks one of "
                        f"{list(configs.KINDS)}); repeatable")
    p.add_argument("--model", action="append", default=[], metavar="PATH",
                   help="the recurrent layers of a saved model (rnnfast checkpoint or safetensors state dict) with "
                        "its own weights, inference and train at --model-shape; repeatable")
    p.add_argument("--model-shape", default="64:100", metavar="B:T",
                   help="batch size and sequence length for --model (default 64:100)")
    p.add_argument("--engines", type=_csv, default=list(DEFAULT_ENGINES),
                   help=f"comma-separated subset of {','.join(ENGINES)} (default {','.join(DEFAULT_ENGINES)}; the "
                        "int8/bf16 engines run inference and stream configurations)")
    p.add_argument("--repeat", type=int, default=None, help="timed samples per engine (default 15, --quick 3)")
    p.add_argument("--min-sample-time", type=float, default=None,
                   help="seconds: tiny calls are repeated within one sample up to this (default 0.02, --quick 0)")
    p.add_argument("--no-interleave", dest="interleave", action="store_false",
                   help="time each engine's samples back to back (to diagnose interference between engines)")
    p.add_argument("--gap", type=float, default=0.01,
                   help="seconds of idling after each sample, so that the previous engine's worker threads stop "
                        "spinning before the next engine is timed (default 0.01)")
    p.add_argument("--quick", action="store_true",
                   help="3 samples per engine, no inner repeats, no memory probes, a shorter peak measurement, "
                        "no numpy matmul row; realistic and ragged cases shrink to tiny shapes")
    p.add_argument("--json", metavar="PATH", help="write every measurement as JSON (atomically)")
    p.add_argument("--markdown", metavar="PATH", help="write the tables as markdown (for benchmarks/RESULTS.md)")
    p.add_argument("--memory", dest="memory", action="store_true", default=None,
                   help="measure peak memory of throughput and train configs in a child process per engine "
                        "(default on, off with --quick)")
    p.add_argument("--no-memory", dest="memory", action="store_false")
    p.add_argument("--scaling", action="store_true",
                   help="LSTM scaling study (time vs T, B, H, threads); runs alone unless --configs is also given")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error(f"--threads: expected a positive integer, got {args.threads}")
    for name, allowed in (("cells", configs.ALL_CELLS), ("engines", ENGINES)):
        bad = [v for v in getattr(args, name) if v not in allowed]
        if bad or not getattr(args, name):
            p.error(f"--{name}: expected a non-empty subset of {list(allowed)}, got {getattr(args, name)}")
    if args.configs is None:
        args.configs = [] if args.scaling or args.shape or args.model else list(configs.DEFAULT_GROUPS)
    args.groups = [c for c in args.configs if c in configs.OTHER_GROUPS]
    try:
        args.specs = configs.select([c for c in args.configs if c not in configs.OTHER_GROUPS])
    except ValueError as exc:
        p.error(str(exc))
    args.extra = []  # (spec, cell) pairs of --shape and --model: their cell is fixed
    try:
        for text in args.shape:
            args.extra += configs.parse_shape(text)
        B, T = _model_shape(args.model_shape)
        for path in args.model:
            from . import saved_model

            args.extra += saved_model.specs(path, B, T)
    except ValueError as exc:
        p.error(str(exc))
    args.repeat = args.repeat or (3 if args.quick else 15)
    if args.repeat < 1:
        p.error(f"--repeat: expected a positive integer, got {args.repeat}")
    if args.gap < 0 or (args.min_sample_time or 0) < 0:
        p.error(f"--gap and --min-sample-time: expected seconds >= 0, got {args.gap} and {args.min_sample_time}")
    if args.min_sample_time is None:
        args.min_sample_time = 0.0 if args.quick else 0.02
    args.warmup = 1 if args.quick else 2
    if args.memory is None:
        args.memory = not args.quick
    return args


def _model_shape(text: str) -> tuple[int, int]:
    try:
        B, T = (int(v) for v in text.split(":"))
        if B >= 1 and T >= 1:
            return B, T
    except ValueError:
        pass
    raise ValueError(f"--model-shape: expected B:T with positive integers, got {text!r}")


def _status(exc: BaseException) -> dict:
    if isinstance(exc, ImportError):
        return dict(status="not installed", detail=str(exc))
    if isinstance(exc, Unsupported):
        return dict(status="-", detail=str(exc))
    return dict(status="error", detail=f"{type(exc).__name__}: {exc}")


def run_one(spec: Spec, cell: str, args) -> dict:
    """Build every engine on the same weights and data, check them against rnnfast, time them interleaved."""
    if spec.source:
        from . import saved_model

        weights, source = saved_model.weights(spec), spec.source[0]
    else:
        weights, source = engine_rnnfast.shared_weights(cell, spec)
    data = configs.make_data(spec)
    flops = configs.flops(spec, cell)
    entry = dict(config=spec.name, group=spec.group, label=spec.label, kind=spec.kind, cell=cell, B=spec.B, T=spec.T,
                 H=spec.H, I=spec.input_size, layers=spec.layers, bidirectional=spec.bidirectional, flops=flops,
                 time_unit="per step" if spec.kind == "stream" else "per call",
                 weights_from=source, engines={})
    cases, outputs = {}, {}
    for name in args.engines:
        try:
            cases[name] = FACTORIES[name](cell, spec, weights, data, args.threads)
            outputs[name] = cases[name].outputs()  # the check's run doubles as the first warm-up
        except Exception as exc:  # noqa: BLE001 - one broken engine must not stop the others
            cases.pop(name, None)
            entry["engines"][name] = _status(exc)
    ref = "rnnfast" if "rnnfast" in outputs else next(iter(outputs), None)
    entry["reference"] = ref
    for name in outputs:
        check = dict(reference=True) if name == ref else \
            compare.compare(outputs[ref], outputs[name], getattr(cases[name], "tolerance", compare.TOLERANCE))
        entry["engines"][name] = dict(status="ok" if check.get("ok", True) else "MISMATCH", check=check)
    del outputs
    if cases:
        stats = timing.measure(cases, args.repeat, args.warmup, args.min_sample_time, spec.steps_per_call,
                               args.interleave, args.gap)
        for name, st in stats.items():
            if "error" in st:  # a mismatch stays the headline
                e = entry["engines"][name]
                e.update(status="error" if e["status"] == "ok" else e["status"], detail=st["error"])
            else:
                entry["engines"][name].update(st, gflops=flops / st["median_s"] / 1e9)
    base = entry["engines"].get("rnnfast", {}).get("median_s")
    for name, e in entry["engines"].items():
        if name != "rnnfast" and base and e.get("median_s"):
            e["speedup"] = e["median_s"] / base  # > 1: rnnfast is faster
    entry["engines"] = {n: entry["engines"][n] for n in args.engines if n in entry["engines"]}
    return entry


def _progress(k: int, n: int, entry: dict) -> None:
    parts = [f"{name} {report.fmt_time(e['median_s'])}" if "median_s" in e else f"{name} {e['status']}"
             for name, e in entry["engines"].items()]
    print(f"[{k}/{n}] {entry['cell']} {entry['label']}: " + ", ".join(parts), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    engine_rnnfast.set_threads(args.threads)
    if "torch" in args.engines and peer_torch.version():
        peer_torch.set_threads(args.threads)
    result = dict(command="rnnfast bench " + " ".join(argv), machine=report.machine_info(args.threads),
                  settings=dict(threads=args.threads, repeat=args.repeat, warmup=args.warmup, quick=args.quick,
                                min_sample_time_s=args.min_sample_time, interleave=args.interleave, gap_s=args.gap,
                                cells=args.cells, engines=args.engines,
                                configs=[s.name for s in args.specs] + [s.name for s, _ in args.extra],
                                groups=args.groups),
                  results=[])
    load = timing.OtherLoad().start()
    peak = result["peak"] = timing.fma_peak(args.threads, repeat=5 if args.quick else 20)
    if not args.quick:
        result["matmul"] = timing.matmul_rate(args.threads, repeat=7)  # informational only
    todo = [(spec, cell) for spec in args.specs for cell in args.cells] + args.extra
    for k, (spec, cell) in enumerate(todo, 1):
        result["results"].append(run_one(spec, cell, args))
        _progress(k, len(todo), result["results"][-1])
    if todo and not args.quick:
        # a quieter moment may come later: look again after the run and keep the best sample of both
        again = timing.fma_peak(args.threads, repeat=20)
        peak["best_before_after_gflops"] = [peak["gflops"], again["gflops"]]
        if again["gflops"] > peak["gflops"]:
            peak.update({k: again[k] for k in ("gflops", "median_gflops", "samples_gflops")})
    for entry in result["results"]:
        report.set_efficiency(entry, peak["gflops"])
    if args.memory and todo:
        from . import memory

        result["memory"] = memory.run(args.specs, args.cells, args.engines, args.threads)
    if args.scaling:
        from . import scaling

        result["scaling"] = scaling.run(args, peak)
    for group in args.groups:
        result[group] = report.group_module(group).run(args)
    result["machine"]["other_load"] = load.stop()
    out = sys.stdout
    report.print_all(result, out)
    mismatches = report.mismatches(result)
    for line in mismatches:
        print("!!! " + line, file=out)
    if args.json:
        report.write_json(args.json, result)
    if args.markdown:
        report.write_markdown(args.markdown, result)
    return 1 if mismatches else 0
