"""Rows of measured ratios, each next to its target: the output of --configs realistic and ragged.

A row is one case: its measured medians (``values``), the ratios that matter with their targets
(``comparisons``) and the correctness check of its engines (``check``), as plain dicts for the JSON.
"""
from __future__ import annotations


def ratio(a, b):
    return a / b if a and b else None


def comparison(what: str, value: float | None, op: str | None = None, target: float | None = None) -> dict:
    """``op`` '>=' or '<=' against ``target``; without one the ratio is shown for information."""
    met = None if value is None or op is None else (value >= target if op == ">=" else value <= target)
    return dict(what=what, ratio=value, target=f"{op} {target:g}x" if op else "-", met=met)


def row(case: str, title: str, unit: str, values: dict, comparisons: list, check: dict, **details) -> dict:
    return dict(case=case, title=title, unit=unit, values=values, comparisons=comparisons, check=check,
                status="ok" if check.get("ok", True) else "MISMATCH", details=details)


def error_row(case: str, exc: BaseException) -> dict:
    r = row(case, case, "", {}, [], dict(ok=True), error=f"{type(exc).__name__}: {exc}")
    r["status"] = "error"
    return r


def _value_text(value, unit: str) -> str:
    from .report import fmt_time

    if isinstance(value, str):
        return value
    return fmt_time(value) if unit.startswith("s") else f"{value:,.0f} {unit}"


def _values_text(r: dict) -> str:
    return "; ".join(f"{k} {_value_text(v, r['unit'])}" for k, v in r["values"].items())


def _check_text(check: dict) -> str:
    if "scaled_diff" not in check:
        return "ok" if check.get("ok", True) else f"MISMATCH {check.get('error', '')}".rstrip()
    verdict = "ok" if check["ok"] else "MISMATCH"
    return f"{verdict} {check['scaled_diff']:.1e}" + ("" if check["ok"] else f" (tol {check['tol']:.0e}) !!!")


def _ratio_text(c: dict) -> str:
    if c["ratio"] is None:
        return "-"
    return f"{c['ratio']:.2f}x" if c["ratio"] >= 0.1 else f"{c['ratio']:.3f}x"


def print_rows(heading: str, rows: list, out) -> None:
    print("", file=out)
    print(heading, file=out)
    for r in rows:
        print(r["title"], file=out)
        if r["status"] == "error":
            print(f"    error: {r['details'].get('error', '')}", file=out)
            continue
        for c in r["comparisons"]:
            met = {True: "met", False: "NOT MET", None: ""}[c["met"]]
            print(f"    {c['what']:<40}{_ratio_text(c):>9}   target {c['target']:<9}{met}".rstrip(), file=out)
        print(f"    measured: {_values_text(r)}; check {_check_text(r['check'])}", file=out)


HEAD = ["case", "measured (medians)", "ratio", "value", "target", "met"]


def markdown_lines(title: str, note: str, rows: list) -> list[str]:
    from .report import _md_table

    table = []
    for r in rows:
        if r["status"] == "error":
            table.append([r["title"], f"error: {r['details'].get('error', '')}"[:160], "", "", "", ""])
            continue
        for k, c in enumerate(r["comparisons"]):
            met = {True: "yes", False: "NO", None: ""}[c["met"]]
            table.append([r["title"] if k == 0 else "", _values_text(r) if k == 0 else "", c["what"], _ratio_text(c),
                          c["target"], met + ("" if k else f" (check {_check_text(r['check'])})")])
    return [f"## {title}", "", note, ""] + _md_table(HEAD, table) + [""]


def mismatches(group: str, rows: list) -> list[str]:
    return [f"MISMATCH: {group} case {r['case']}: {r['check']}" for r in rows if r["status"] == "MISMATCH"]
