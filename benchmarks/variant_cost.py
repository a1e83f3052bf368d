"""What each cell variant costs against its default cell: both on the same shape in one process,
timed interleaved (A1 B1 A2 B2 ..., rnnfast.bench.timing.measure), medians and their ratio.

    python benchmarks/variant_cost.py [--repeat 15] [--threads 2] [--configs latency,stream,throughput,train]

Variants: lstm_peephole vs lstm, gru_reset_before vs gru, lstm_reverse vs lstm (no stream: a reverse
layer has none). A ratio > 1 means the variant is slower. `rnnfast bench --cells lstm,lstm_peephole`
times the same configurations one after another instead.
"""
from __future__ import annotations

import argparse

from rnnfast.bench import configs, engine_rnnfast, timing


def cost(spec, variant: str, repeat: int, threads: int) -> tuple[float, float]:
    """(default cell's median, variant's median) in seconds per call (per step for streams)."""
    base = configs.VARIANT_CELLS[variant][0]
    data = configs.make_data(spec)
    weights, _ = engine_rnnfast.shared_weights(base, spec)
    cases = {}
    for cell in (base, variant):
        w = engine_rnnfast.shared_weights(cell, spec)[0]
        w.update({k: v for k, v in weights.items() if k in w})  # the same W, R, b; the variant adds P
        cases[cell] = engine_rnnfast.make_case(cell, spec, w, data, threads)
    stats = timing.measure(cases, repeat, steps_per_call=spec.steps_per_call)
    return stats[base]["median_s"], stats[variant]["median_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--configs", default="latency,stream,throughput,train")
    p.add_argument("--variants", default=",".join(configs.VARIANT_CELLS))
    args = p.parse_args()
    engine_rnnfast.set_threads(args.threads)
    print(f"{'config':36} {'variant':17} {'default':>10} {'variant':>10} {'ratio':>6}")
    for spec in configs.select(args.configs.split(",")):
        for variant in args.variants.split(","):
            if spec.kind == "stream" and variant == "lstm_reverse":
                continue
            a, b = cost(spec, variant, args.repeat, args.threads)
            print(f"{spec.label:36} {variant:17} {timing_fmt(a):>10} {timing_fmt(b):>10} {b / a:6.2f}", flush=True)


def timing_fmt(seconds: float) -> str:
    from rnnfast.bench.report import fmt_time
    return fmt_time(seconds)


if __name__ == "__main__":
    main()
