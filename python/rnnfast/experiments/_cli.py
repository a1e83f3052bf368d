"""Command-line plumbing shared by the experiments: options, presets, tables."""
from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sys
import time

import numpy as np


class UserError(Exception):
    """A mistake on the command line: one line on stderr, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UserError(f"{message} (see `{self.prog} --help`)")


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def name_list(text: str) -> list[str]:
    """``--cells rnn,lstm`` -> ['rnn', 'lstm']."""
    return [c.strip() for c in text.split(",") if c.strip()]


def check_cells(args, cells) -> None:
    """``args.cells`` defaults to every one of ``cells``; an unknown name is a UserError."""
    args.cells = args.cells or list(cells)
    bad = [c for c in args.cells if c not in cells]
    if bad:
        raise UserError(f"--cells: expected names from {tuple(cells)}, got {bad}")


def command(prog: str, options, run, report, plot, plot_file: str):
    """The ``main(argv)`` of an experiment: ``options(argv)`` -> args (UserError for a bad command
    line: one line on stderr, status 2), then run, report and, unless --no-plot, plot."""
    def main(argv) -> int:
        try:
            args = options(argv)
        except UserError as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 2
        results = run(args)
        report(args, results)
        if not args.no_plot:
            plot(args, results, os.path.join(args.out, plot_file))
        return 0
    return main


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hidden", type=int, help="hidden size of every cell")
    p.add_argument("--steps", type=int, help="training steps (optimizer updates) per run")
    p.add_argument("--batch-size", type=int, help="sequences per training step")
    p.add_argument("--seeds", type=int, help="number of seeds (runs use seeds 0 .. N-1)")
    p.add_argument("--lr", type=float, help="learning rate (Adam)")
    p.add_argument("--clip", type=float, help="gradient-norm clipping threshold; 0 = off")
    p.add_argument("--lstm-forget-bias", type=float, metavar="B",
                   help="initialise the LSTM's forget-gate bias to B (default: PyTorch's uniform init, mean 0)")
    p.add_argument("--threads", type=int, default=1, help="rnnfast kernel threads (default 1)")
    p.add_argument("--quick", action="store_true", help="a small configuration that runs in under a minute")
    p.add_argument("--out", default="experiment-plots",
                   help="directory for the PNG plots (default ./experiment-plots; created if missing)")
    p.add_argument("--no-plot", action="store_true", help="print the tables only")


def presets_epilog(full: dict, quick: dict) -> str:
    """The defaults of the options left unset, for --help."""
    show = lambda d: ", ".join(f"--{k.replace('_', '-')} {','.join(map(str, v)) if isinstance(v, list) else v}"
                               for k, v in d.items())
    return f"defaults: {show(full)}.   With --quick: {show(quick)}."


def resolve(args, full: dict, quick: dict) -> None:
    """Fill every option left unset from the preset (``--quick`` or full) and validate."""
    preset = quick if args.quick else full
    for key, value in preset.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    for key in ("hidden", "steps", "batch_size", "seeds", "threads"):
        if getattr(args, key) < 1:
            raise UserError(f"--{key.replace('_', '-')}: expected a positive integer, got {getattr(args, key)}")
    if not args.lr > 0:
        raise UserError(f"--lr: expected a positive number, got {args.lr}")
    if args.clip < 0:
        raise UserError(f"--clip: expected a number >= 0 (0 = off), got {args.clip}")


def begin(title: str, args, extra: str = "") -> None:
    """Set the kernel thread count and print what the run is: settings, machine, kernel build."""
    from .. import _core, cpu_info, set_num_threads
    set_num_threads(args.threads)
    info = cpu_info()
    print(f"# {title}")
    print(f"# hidden={args.hidden} steps={args.steps} batch={args.batch_size} lr={args.lr} "
          f"clip={args.clip or 'off'} seeds={list(range(args.seeds))} {extra}".rstrip() +
          ("" if args.lstm_forget_bias is None else f" lstm_forget_bias={args.lstm_forget_bias:g}"))
    print(f"# machine: {platform.machine()} {os.cpu_count()} cpus, isa={info.get('isa')}, "
          f"threads={info.get('num_threads')}, numpy {np.__version__}, core build {_file_hash(_core.__file__)}")


def _file_hash(path) -> str:
    """Short sha256 of the compiled core: training is chaotic, so a kernel rebuild that moves the
    rounding of one float can change a seed's outcome; this names the build the numbers came from."""
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()[:12]
    except OSError:
        return "unknown"


def mean_std(values, digits: int = 3) -> str:
    """'mean ± std' over seeds (sample std, ddof=1; 0 for one seed)."""
    v = np.asarray(values, dtype=np.float64)
    std = v.std(ddof=1) if v.size > 1 else 0.0
    return f"{v.mean():.{digits}f} ± {std:.{digits}f}"


def table(headers, rows) -> str:
    """A plain aligned text table (also valid Markdown)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


class Clock:
    def __init__(self):
        self.t0 = time.perf_counter()

    def __str__(self):
        return f"{time.perf_counter() - self.t0:.1f} s"
