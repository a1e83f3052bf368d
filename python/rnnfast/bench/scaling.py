"""`rnnfast bench --scaling`: how rnnfast's LSTM time grows with T, B, H and the thread count."""
from __future__ import annotations

import numpy as np

from . import configs, engine_rnnfast, timing
from .configs import Spec

CELL = "lstm"
# (sweep name, the fixed shape, the values swept); inference unless said otherwise
SWEEPS = {
    "T": (dict(B=64, H=256), (25, 50, 100, 200, 400)),
    "B": (dict(T=50, H=256), (1, 4, 16, 64, 256)),
    "H": (dict(B=64, T=50), (128, 256, 512, 1024)),
}
QUICK_SWEEPS = {
    "T": (dict(B=8, H=64), (10, 20, 40)),
    "B": (dict(T=10, H=64), (1, 8, 32)),
    "H": (dict(B=8, T=10), (32, 64, 128)),
}
THREAD_SHAPES = (("inference", 1, 100, 256), ("inference", 64, 100, 512), ("train", 64, 100, 512))
QUICK_THREAD_SHAPES = (("inference", 1, 20, 64), ("train", 8, 20, 64))
LINEAR_TOLERANCE = 0.10  # max relative deviation from the straight-line fit still called linear


def _case(kind: str, B: int, T: int, H: int):
    spec = Spec(f"scaling-{kind}-B{B}-T{T}-H{H}", "scaling", kind, B, T, H)
    weights, _ = engine_rnnfast.shared_weights(CELL, spec)
    return spec, engine_rnnfast.make_case(CELL, spec, weights, configs.make_data(spec), 1)


def _measure(cases: dict, args) -> dict:
    res = timing.measure(cases, args.repeat, args.warmup, args.min_sample_time, gap=args.gap)
    for name, st in res.items():
        if "error" in st:
            raise RuntimeError(f"scaling: rnnfast failed ({name}): {st['error']}")
    return res


def linear_fit(ts: list[int], seconds: list[float]) -> dict:
    """Least-squares time = a + b*T; linear when no point is further than LINEAR_TOLERANCE from the line."""
    t, y = np.asarray(ts, float), np.asarray(seconds, float)
    b, a = np.polyfit(t, y, 1)
    fit = a + b * t
    dev = float(np.max(np.abs(y - fit) / y))
    ss_res, ss_tot = float(np.sum((y - fit) ** 2)), float(np.sum((y - y.mean()) ** 2))
    return dict(per_step_s=float(b), intercept_s=float(a), r2=1.0 - ss_res / ss_tot if ss_tot else 1.0,
                max_rel_dev=dev, linear=bool(dev <= LINEAR_TOLERANCE))


def run(args, peak: dict) -> dict:
    sweeps = QUICK_SWEEPS if args.quick else SWEEPS
    thread_shapes = QUICK_THREAD_SHAPES if args.quick else THREAD_SHAPES
    out: dict = dict(cell=CELL, sweeps={}, threads={})
    engine_rnnfast.set_threads(args.threads)
    for sweep, (fixed, values) in sweeps.items():
        rows = []
        for v in values:
            shape = dict(fixed, **{sweep: v})
            spec, case = _case("inference", shape["B"], shape["T"], shape["H"])
            engine_rnnfast.set_threads(args.threads)
            st = _measure({"rnnfast": case}, args)["rnnfast"]
            gflops = configs.flops(spec, CELL) / st["median_s"] / 1e9
            rows.append(dict(shape, median_s=st["median_s"], iqr_pct=st["iqr_pct"], gflops=gflops,
                             efficiency=gflops / peak["gflops"]))
        out["sweeps"][sweep] = dict(fixed=fixed, rows=rows)
    out["sweeps"]["T"]["fit"] = linear_fit([r["T"] for r in out["sweeps"]["T"]["rows"]],
                                           [r["median_s"] for r in out["sweeps"]["T"]["rows"]])
    counts = sorted({1, args.threads, 2} if args.threads >= 2 else {1})
    peaks = {n: (peak if n == peak["threads"] else timing.fma_peak(n, repeat=10)) for n in counts}
    for kind, B, T, H in thread_shapes:
        spec, case = _case(kind, B, T, H)
        st = _measure({n: engine_rnnfast.WithThreads(case, n) for n in counts}, args)
        rows = [dict(threads=n, median_s=st[n]["median_s"], iqr_pct=st[n]["iqr_pct"],
                     gflops=configs.flops(spec, CELL) / st[n]["median_s"] / 1e9, peak_gflops=peaks[n]["gflops"],
                     speedup_vs_1=st[1]["median_s"] / st[n]["median_s"]) for n in counts]
        out["threads"][f"{kind} B={B} T={T} H={H}"] = rows
    engine_rnnfast.set_threads(args.threads)
    return out


def _sweep_rows(sweep: dict, name: str) -> list[list[str]]:
    from .report import fmt_time

    rows = []
    for r in sweep["rows"]:
        per_step = r["median_s"] / r["T"]
        rows.append([f"{name}={r[name]}", f"B={r['B']} T={r['T']} H={r['H']}", fmt_time(r["median_s"]),
                     fmt_time(per_step), f"{r['gflops']:.1f}", f"{100 * r['efficiency']:.1f}"])
    return rows


def _thread_rows(threads: dict) -> list[list[str]]:
    from .report import fmt_time

    return [[label, str(r["threads"]), fmt_time(r["median_s"]), f"{r['gflops']:.1f}", f"{r['peak_gflops']:.1f}",
             f"{r['speedup_vs_1']:.2f}x"] for label, rows in threads.items() for r in rows]


SWEEP_HEAD = ["sweep", "shape", "median", "per step", "GFLOP/s", "%peak"]
THREAD_HEAD = ["shape", "threads", "median", "GFLOP/s", "peak", "speed-up vs 1"]


def _fit_text(fit: dict) -> str:
    verdict = "linear" if fit["linear"] else "NOT linear"
    return (f"time vs T: {verdict} (fit {fit['per_step_s'] * 1e6:.1f} us/step + {fit['intercept_s'] * 1e3:.2f} ms, "
            f"R^2 {fit['r2']:.4f}, max deviation {100 * fit['max_rel_dev']:.1f}%)")


def print_tables(res: dict, out) -> None:
    print("", file=out)
    print(f"scaling of rnnfast {res['cell'].upper()} (inference unless marked train; %peak of the physical peak)",
          file=out)
    widths = (8, 22, 11, 11, 9, 6)
    print("".join(h.ljust(w + 1) for h, w in zip(SWEEP_HEAD, widths)), file=out)
    for name, sweep in res["sweeps"].items():
        for row in _sweep_rows(sweep, name):
            print("".join(c.ljust(w + 1) for c, w in zip(row, widths)).rstrip(), file=out)
    print(_fit_text(res["sweeps"]["T"]["fit"]), file=out)
    print("", file=out)
    widths = (30, 8, 11, 9, 12, 12)
    print("".join(h.ljust(w + 1) for h, w in zip(THREAD_HEAD, widths)), file=out)
    for row in _thread_rows(res["threads"]):
        print("".join(c.ljust(w + 1) for c, w in zip(row, widths)).rstrip(), file=out)


def markdown_lines(res: dict) -> list[str]:
    from .report import _md_table

    lines = [f"## Scaling of the {res['cell'].upper()}", "", "Inference unless marked train.", ""]
    rows = [row for name, sweep in res["sweeps"].items() for row in _sweep_rows(sweep, name)]
    lines += _md_table(SWEEP_HEAD, rows) + ["", _fit_text(res["sweeps"]["T"]["fit"]), ""]
    lines += _md_table(THREAD_HEAD, _thread_rows(res["threads"])) + [""]
    return lines
