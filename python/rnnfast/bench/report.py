"""Output of `rnnfast bench`: machine info, the fixed-width table, markdown and the JSON file."""
from __future__ import annotations

import datetime
import importlib
import json
import os
import platform
import tempfile

import numpy as np

from . import compare, peer_onnx, peer_torch, reduced
from .configs import OTHER_GROUPS

COLUMNS = (("config", 36), ("cell", 5), ("engine", 17), ("median", 10), ("iqr", 9), ("min", 10), ("GFLOP/s", 8),
           ("%peak", 6), ("speed-up", 9), ("check", 0))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(threads: int) -> dict:
    import rnnfast

    try:
        core = rnnfast.cpu_info()
    except Exception as exc:  # noqa: BLE001 - informative only
        core = dict(error=str(exc))
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        import onnx
        onnx_version = onnx.__version__
    except ImportError:
        onnx_version = None
    return dict(cpu_model=cpu_model(), logical_cpus=os.cpu_count(), usable_cpus=usable, threads=threads,
                rnnfast_cpu_info=core, platform=platform.platform(),
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                versions=dict(python=platform.python_version(), rnnfast=rnnfast.__version__, numpy=np.__version__,
                              torch=peer_torch.version(), onnxruntime=peer_onnx.version(), onnx=onnx_version))


TOL_TEXT = f"{compare.TOLERANCE:g} x max(1, max |rnnfast's value|) per output"
LOAD_WARNING = 0.10


def _load_text(load: float | None) -> str:
    if load is None:
        return "load of other processes during the run: unknown"
    text = f"other processes used {100 * load:.0f}% of the CPUs during the run"
    return text + (" -- WARNING: timings are disturbed, rerun on a quiet machine" if load > LOAD_WARNING else "")


def fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1.0:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.3f} s"


def _check_text(e: dict) -> str:
    c = e.get("check")
    if c is None:
        return ""
    if c.get("reference"):
        return "reference"
    if "error" in c:
        return f"MISMATCH {c['error']}"
    text = f"{c['max_abs_diff']:.1e}"
    return f"ok {text}" if c["ok"] else f"MISMATCH {text} in {c['worst_output']} (tol {c['tol']:.0e}) !!!"


def row_cells(entry: dict, name: str, e: dict) -> list[str]:
    """One engine's row, as strings in COLUMNS order."""
    if "median_s" not in e:
        status = e["status"] if e["status"] != "error" else f"error: {e.get('detail', '')}"[:100]
        return [entry["label"], entry["cell"], name, status] + [""] * 6
    eff = e.get("efficiency")
    speed = e.get("speedup")
    return [entry["label"], entry["cell"], name, fmt_time(e["median_s"]), f"+-{e['iqr_pct'] / 2:.1f}%",
            fmt_time(e["min_s"]), f"{e['gflops']:.1f}", "" if eff is None else f"{100 * eff:.1f}",
            "" if speed is None else f"{speed:.2f}x", _check_text(e)]


def _fixed(cells: list[str]) -> str:
    if cells[3] and not cells[4] and not cells[5]:  # a status spans the numeric columns
        head = "".join(c.ljust(w) + " " for c, (_, w) in zip(cells[:3], COLUMNS))
        return (head + cells[3]).rstrip()
    return "".join(c.ljust(w) + " " if w else c for c, (_, w) in zip(cells, COLUMNS)).rstrip()


def print_header(result: dict, out) -> None:
    m, peak = result["machine"], result["peak"]
    v = m["versions"]
    print(f"rnnfast bench  {m['date']}  {m['cpu_model']}  ({m['usable_cpus']} usable CPUs)", file=out)
    print(f"threads {m['threads']}  rnnfast {v['rnnfast']} isa={m['rnnfast_cpu_info'].get('isa')}  numpy {v['numpy']}  "
          f"torch {v['torch'] or 'not installed'}  onnxruntime {v['onnxruntime'] or 'not installed'}", file=out)
    print(f"physical peak: {_peak_text(peak)}", file=out)
    if result.get("matmul"):
        print(f"numpy matmul (informational, not the peak): {_matmul_text(result['matmul'])}", file=out)
    print(_load_text(m.get("other_load")), file=out)
    print("times are medians (stream: per step); iqr = half the interquartile range; speed-up = peer median / "
          "rnnfast median; %peak = GFLOP/s / physical peak", file=out)
    print("check: max abs difference from rnnfast's outputs (training: also the input and weight gradients); "
          f"tolerance {TOL_TEXT}", file=out)
    print("", file=out)


def _peak_text(peak: dict) -> str:
    looks = peak.get("best_before_after_gflops")
    seen = f"; best before/after the run {looks[0]:.0f}/{looks[1]:.0f}, the higher kept" if looks else ""
    return (f"{peak['gflops']:.1f} GFLOP/s (register-only FMA loop, {peak['isa']}, {peak['threads']} threads, "
            f"best of {peak['repeat']} samples, median {peak['median_gflops']:.0f}{seen})")


def _matmul_text(mm: dict) -> str:
    return (f"{mm['gflops']:.1f} GFLOP/s (float32 {mm['n']}^3, median of {mm['repeat']}, {mm['threads']} threads, "
            f"{mm['measured']})")


def print_table_head(out) -> None:
    print(_fixed([c for c, _ in COLUMNS]), file=out)
    print("-" * 128, file=out)


def set_efficiency(entry: dict, peak_gflops: float) -> None:
    for e in entry["engines"].values():
        if "gflops" in e:
            e["efficiency"] = e["gflops"] / peak_gflops if peak_gflops else None


def group_module(group: str):
    """The module that runs and prints one of configs.OTHER_GROUPS (imported when used)."""
    return importlib.import_module(f"{__package__}.{group}")


def _groups_in(result: dict) -> list[str]:
    return [g for g in OTHER_GROUPS if result.get(g)]


def print_all(result: dict, out) -> None:
    print_header(result, out)
    if result["results"]:
        print_table_head(out)
        for entry in result["results"]:
            print_rows(entry, out)
        print_summary(result["results"], out)
        reduced.print_ratios(result["results"], out)
    if result.get("memory"):
        print_memory(result["memory"], result["settings"]["engines"], out)
    if result.get("scaling"):
        from . import scaling

        scaling.print_tables(result["scaling"], out)
    for group in _groups_in(result):
        group_module(group).print_table(result[group], out)
    out.flush()


def print_rows(entry: dict, out) -> None:
    for name, e in entry["engines"].items():
        print(_fixed(row_cells(entry, name, e)), file=out)


# rnnfast's own kernels behind another API, and the reduced-precision engines: never "the faster peer"
OUR_ENGINES = ("rnnfast.torch",) + reduced.ENGINES


def speedups(results: list[dict]) -> list[dict]:
    """Per (config, cell): rnnfast's speed-up over each peer and over the faster peer (correct peers only)."""
    rows = []
    for r in results:
        peers = {n: e for n, e in r["engines"].items() if n != "rnnfast" and n not in reduced.ENGINES}
        vs = {n: e.get("speedup") for n, e in peers.items()}
        ok = [e["speedup"] for n, e in peers.items()
              if n not in OUR_ENGINES and e.get("speedup") and e.get("status") == "ok"]
        rows.append(dict(label=r["label"], cell=r["cell"], vs=vs, best=min(ok) if ok else None))
    return rows


def print_summary(results: list[dict], out) -> None:
    rows = speedups(results)
    peers = [n for n in dict.fromkeys(n for r in rows for n in r["vs"])]
    print("", file=out)
    print("rnnfast speed-up (ratio of medians; > 1 means rnnfast is faster)", file=out)
    head = "config".ljust(37) + "cell".ljust(6) + "".join(f"vs {p}".ljust(16) for p in peers)
    print(head + "vs faster peer", file=out)
    for r in rows:
        vals = "".join(_ratio(r["vs"].get(p)).ljust(16) for p in peers)
        print(r["label"].ljust(37) + r["cell"].ljust(5) + " " + vals + _ratio(r["best"]), file=out)


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def print_memory(mem: dict, engines: list[str], out) -> None:
    print("", file=out)
    print(f"peak memory of one call in a fresh process, MiB above the baseline ({mem['method']}; weights, "
          "gradients, activations and workspace count, the input arrays do not)", file=out)
    print("config".ljust(29) + "cell".ljust(6) + "".join(e.ljust(14) for e in engines) + "output MiB", file=out)
    for r in mem["rows"]:
        vals = "".join(_mib(r["engines"].get(e)).ljust(14) for e in engines)
        print(r["label"].ljust(29) + r["cell"].ljust(5) + " " + vals + f"{r['output_mib']:.1f}", file=out)


def _mib(e: dict | None) -> str:
    if not e:
        return "-"
    return f"{e['peak_mib']:.1f}" if "peak_mib" in e else e.get("status", "-")


def mismatches(result: dict) -> list[str]:
    lines = []
    for group in _groups_in(result):
        lines += group_module(group).mismatches(result[group])
    for r in result["results"]:
        for name, e in r["engines"].items():
            if e.get("status") == "MISMATCH":
                lines.append(f"MISMATCH: {name} disagrees with {r['reference']} on {r['cell']} {r['config']}: "
                             f"{_check_text(e)}")
    return lines


def write_json(path: str, result: dict) -> None:
    """Write to a temporary file in the same directory, then rename: readers never see half a file."""
    path = os.path.abspath(path)
    fd, tmp = tempfile.mkstemp(prefix=".bench-", suffix=".json", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]


def markdown(result: dict) -> str:
    m, peak = result["machine"], result["peak"]
    v = m["versions"]
    lines = ["# rnnfast benchmark results", "",
             f"- command: `{result['command']}`",
             f"- date: {m['date']}",
             f"- CPU: {m['cpu_model']} ({m['usable_cpus']} usable CPUs), threads: {m['threads']}, "
             f"rnnfast ISA: {m['rnnfast_cpu_info'].get('isa')}",
             f"- versions: rnnfast {v['rnnfast']}, numpy {v['numpy']}, torch {v['torch']}, "
             f"onnxruntime {v['onnxruntime']}, Python {v['python']}",
             f"- physical peak: {_peak_text(peak)}",
             *([f"- numpy matmul (informational, not the peak): {_matmul_text(result['matmul'])}"]
               if result.get("matmul") else []),
             f"- {_load_text(m.get('other_load'))}",
             "- times are medians (stream: per step); iqr = half the interquartile range; speed-up = peer median / "
             "rnnfast median (> 1: rnnfast is faster); %peak = GFLOP/s / physical peak",
             f"- check: max abs difference from rnnfast's outputs (training: also the gradients); tolerance {TOL_TEXT}",
             ""]
    if result.get("results"):
        rows = [row_cells(r, n, e) for r in result["results"] for n, e in r["engines"].items()]
        lines += _md_table([c for c, _ in COLUMNS], rows) + ["", "## rnnfast speed-up", ""]
        sp = speedups(result["results"])
        peers = list(dict.fromkeys(n for r in sp for n in r["vs"]))
        lines += _md_table(["config", "cell"] + [f"vs {p}" for p in peers] + ["vs faster peer"],
                           [[r["label"], r["cell"]] + [_ratio(r["vs"].get(p)) for p in peers] + [_ratio(r["best"])]
                            for r in sp]) + [""]
        lines += reduced.markdown_lines(result["results"])
    mem = result.get("memory")
    if mem:
        engines = result["settings"]["engines"]
        lines += ["## Peak memory", "", f"MiB above the baseline of a fresh process ({mem['method']}).", ""]
        lines += _md_table(["config", "cell"] + engines + ["output MiB"],
                           [[r["label"], r["cell"]] + [_mib(r["engines"].get(e)) for e in engines]
                            + [f"{r['output_mib']:.1f}"] for r in mem["rows"]]) + [""]
    if result.get("scaling"):
        from . import scaling

        lines += scaling.markdown_lines(result["scaling"])
    for group in _groups_in(result):
        lines += group_module(group).markdown_lines(result[group])
    return "\n".join(lines) + "\n"


def write_markdown(path: str, result: dict) -> None:
    text = markdown(result)
    path = os.path.abspath(path)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
