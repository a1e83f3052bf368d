"""The `rnnfast bench` configurations for pytest-benchmark: one benchmark id per engine, grouped by
configuration and cell, each peer checked against rnnfast on the same weights before it is timed.

Not part of the unit tests; run with `PYTHONPATH=python python -m pytest benchmarks/ --benchmark-only`.
A stream benchmark's time is per call of 100 steps (extra_info has the per-step time).
"""
import pytest

from rnnfast.bench import compare, configs, engine_rnnfast
from rnnfast.bench.configs import Unsupported
from rnnfast.bench.runner import FACTORIES

SPECS = configs.select(list(configs.DEFAULT_GROUPS))
ENGINES = ("rnnfast", "torch", "onnxruntime")
_reference: dict = {}  # (spec name, cell) -> (weights, data, rnnfast outputs): shared by the engines


def _shared(spec, cell, threads):
    key = (spec.name, cell)
    if key not in _reference:
        weights, _ = engine_rnnfast.shared_weights(cell, spec)
        data = configs.make_data(spec)
        ours = FACTORIES["rnnfast"](cell, spec, weights, data, threads)
        _reference[key] = (weights, data, ours.outputs())
    return _reference[key]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("cell", configs.CELLS)
@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_bench(benchmark, spec, cell, engine, bench_threads):
    benchmark.group = f"{spec.name} {cell}"
    weights, data, reference = _shared(spec, cell, bench_threads)
    try:
        case = FACTORIES[engine](cell, spec, weights, data, bench_threads)
    except ImportError as exc:
        pytest.skip(f"{engine} not installed ({exc})")
    except Unsupported as exc:
        pytest.skip(str(exc))
    if engine != "rnnfast":
        check = compare.compare(reference, case.outputs(), compare.TOLERANCE)
        assert check["ok"], f"{engine} disagrees with rnnfast: {check}"
    benchmark.extra_info.update(config=spec.name, cell=cell, engine=engine, threads=bench_threads,
                                flops_per_step=configs.flops(spec, cell), steps_per_call=spec.steps_per_call)
    benchmark(case.run)
