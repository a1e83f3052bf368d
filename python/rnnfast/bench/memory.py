"""Peak memory of one call per engine, each in a fresh child process (Linux /proc).

The C++ kernels, oneDNN and ONNX Runtime allocate outside Python's view (tracemalloc sees none of it),
so the probe reads the resident set: the baseline is VmRSS after the imports and the input arrays,
the peak is VmHWM after building the engine and running one call, with the high-water mark reset at
the baseline (write "5" to /proc/self/clear_refs). Where that reset is refused it falls back to
getrusage's ru_maxrss, which over-reports when an import peaked higher than the baseline.
A fresh process per measurement keeps one engine's freed-but-cached memory out of another's number.
"""
from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys

from . import configs

MIB = 1024.0 * 1024.0


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def probe(engine: str, cell: str, spec_name: str, threads: int) -> dict:
    """Run in the child: MiB of resident memory one call adds on top of the baseline."""
    from .runner import FACTORIES

    spec = configs.select([spec_name])[0]
    data = configs.make_data(spec)
    weights = configs.numpy_weights(cell, spec.H, spec.input_size)  # no model of any engine exists before the baseline
    if engine == "torch":
        import torch  # noqa: F401  imports belong to the baseline
    elif engine == "onnxruntime":
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    gc.collect()
    base = _status_kib("VmRSS")
    reset = base is not None and _reset_peak()
    case = FACTORIES[engine](cell, spec, weights, data, threads)
    case.run()
    if reset:
        peak, method = _status_kib("VmHWM"), "VmHWM after clear_refs"
    else:
        peak, method = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss"
        base = base if base is not None else 0
    return dict(peak_mib=(peak - base) / 1024.0, method=method)


def _spawn(engine: str, cell: str, spec: configs.Spec, threads: int) -> dict:
    pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([pkg_root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    cmd = [sys.executable, "-m", "rnnfast.bench.memory", engine, cell, spec.name, str(threads)]
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        return dict(status=f"error: {exc}")
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        err = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return dict(status="not installed" if "ModuleNotFoundError" in err or "ImportError" in err else "error",
                    detail=err)
    return json.loads(lines[-1])


def run(specs: list, cells: list[str], engines: list[str], threads: int) -> dict:
    """Probe the throughput and train configurations (the ones where memory matters)."""
    rows, methods = [], set()
    for spec in specs:
        if spec.group not in ("throughput", "train", "smoke") or spec.kind == "stream":
            continue
        for cell in cells:
            row = dict(config=spec.name, label=spec.label, cell=cell, kind=spec.kind,
                       output_mib=spec.T * spec.B * spec.H * 4 / MIB, engines={})
            for engine in engines:
                if engine == "onnxruntime" and spec.kind == "train":
                    row["engines"][engine] = dict(status="-")
                    continue
                row["engines"][engine] = res = _spawn(engine, cell, spec, threads)
                methods.add(res.get("method"))
            rows.append(row)
    methods.discard(None)
    return dict(method=", ".join(sorted(methods)) or "none", rows=rows)


if __name__ == "__main__":
    engine_arg, cell_arg, spec_arg, threads_arg = sys.argv[1:5]
    print(json.dumps(probe(engine_arg, cell_arg, spec_arg, int(threads_arg))))
