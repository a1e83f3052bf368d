"""Count the fuzz suite's outcomes: cases tried, clear errors, correct results, crashes, silently wrong.

Each test of tests/test_fuzz.py runs in its own pytest process, which records every case it starts
and how it ended (tests/fuzz_harness.py); a case that started and never ended crashed its process
(whose exit status is reported too). Usage, from the repository root:

    python scripts/fuzz_report.py [--examples N] [--isa ISA]

Exit status 1 if any case crashed, was silently wrong or raised an unclear error.
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITE = os.path.join(ROOT, "tests", "test_fuzz.py")


def test_names() -> list[str]:
    with open(SUITE, encoding="utf-8") as f:
        return re.findall(r"^def (test_\w+)\(", f.read(), flags=re.M)


def run_test(name: str, examples: int, env_extra: dict) -> tuple[int, list[str]]:
    with tempfile.NamedTemporaryFile("r", suffix=".fuzz", delete=False) as rec:
        path = rec.name
    env = dict(os.environ, RNNFAST_FUZZ_RECORD=path, RNNFAST_FUZZ_EXAMPLES=str(examples), **env_extra)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"{SUITE}::{name}"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    os.unlink(path)
    return proc.returncode, lines


def tally(lines: list[str]) -> tuple[collections.Counter, list[str]]:
    counts, open_case, notes = collections.Counter(), None, []
    for line in lines:
        kind, label = (line.split("\t") + [""])[:2]
        if kind == "start":
            if open_case is not None:  # never happens: every case ends before the next starts
                counts["crash"] += 1
            counts["tried"] += 1
            open_case = label
            continue
        counts[kind] += 1
        if kind in ("wrong", "unclear"):
            notes.append(line)
        open_case = None
    if open_case is not None:
        counts["crash"] += 1
        notes.append(f"crash\t{open_case}")
    return counts, notes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=200, help="hypothesis cases per test (default 200)")
    ap.add_argument("--isa", help="RNNFAST_ISA for the runs (default: the best this CPU has)")
    args = ap.parse_args(argv)
    env_extra = {"RNNFAST_ISA": args.isa} if args.isa else {}
    total, notes = collections.Counter(), []
    print(f"{'test':34} {'tried':>7} {'errors':>7} {'correct':>7} {'crash':>6} {'wrong':>6} {'unclear':>7}  rc")
    for name in test_names():
        rc, lines = run_test(name, args.examples, env_extra)
        counts, n = tally(lines)
        total += counts
        notes += n
        print(f"{name:34} {counts['tried']:7} {counts['error']:7} {counts['ok']:7} {counts['crash']:6} "
              f"{counts['wrong']:6} {counts['unclear']:7}  {rc}")
    print(f"{'total':34} {total['tried']:7} {total['error']:7} {total['ok']:7} {total['crash']:6} "
          f"{total['wrong']:6} {total['unclear']:7}")
    for line in notes[:50]:
        print(line)
    return 1 if total["crash"] or total["wrong"] or total["unclear"] else 0


if __name__ == "__main__":
    sys.exit(main())
