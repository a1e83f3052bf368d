"""The correctness check run before timing: every engine's outputs against the reference engine's."""
from __future__ import annotations

import numpy as np

# max |a - b| / max(1, max |ref|) per output; inference outputs are O(1), weight gradients are sums
# over T*B terms, hence the scale. Looser than float32 rounding by ~100x, far below any real bug.
TOLERANCE = 1e-4


def compare(ref: dict, other: dict, tol: float) -> dict:
    """Check result: ok, the worst scaled difference and the output it occurred in, every output's."""
    common = [k for k in ref if k in other]
    if not common:
        return dict(ok=False, error=f"no common outputs (reference has {sorted(ref)}, got {sorted(other)})", tol=tol)
    per_output, worst_key, worst = {}, None, -1.0
    for k in common:
        a, b = np.asarray(ref[k], np.float64), np.asarray(other[k], np.float64)
        if a.shape != b.shape:
            return dict(ok=False, error=f"{k}: shape {b.shape}, expected {a.shape}", tol=tol)
        if not np.all(np.isfinite(b)):
            return dict(ok=False, error=f"{k}: non-finite values", tol=tol)
        diff = float(np.max(np.abs(a - b))) if a.size else 0.0
        scaled = diff / max(1.0, float(np.max(np.abs(a))) if a.size else 1.0)
        per_output[k] = dict(max_abs_diff=diff, scaled=scaled)
        if scaled > worst:
            worst, worst_key = scaled, k
    return dict(ok=bool(worst <= tol), max_abs_diff=per_output[worst_key]["max_abs_diff"], scaled_diff=worst,
                worst_output=worst_key, tol=tol, outputs=per_output)


def compare_cases(cases: dict) -> dict:
    """Every case's outputs() against the first one's (the reference engine's), as one check."""
    names = list(cases)
    ref = cases[names[0]].outputs()
    checks = {n: compare(ref, cases[n].outputs(), TOLERANCE) for n in names[1:]}
    bad = {n: c for n, c in checks.items() if not c["ok"]}
    worst = max((c.get("scaled_diff", 1.0) for c in checks.values()), default=0.0)
    return dict(ok=not bad, scaled_diff=worst, tol=TOLERANCE, failed=sorted(bad))
