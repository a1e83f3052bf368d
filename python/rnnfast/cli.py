"""The ``rnnfast`` command: each subcommand lives in its own module and is imported only when used."""
from __future__ import annotations

import importlib
import sys

SUBCOMMANDS = {
    "bench": ("rnnfast.bench", "benchmark rnnfast against PyTorch and ONNX Runtime"),
    "charlm": ("rnnfast.charlm", "train or sample a character-level language model"),
    "experiment": ("rnnfast.experiments", "vanishing-gradient and long-range experiments"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        lines = ["usage: rnnfast COMMAND [options]", "", "commands:"]
        lines += [f"  {name:<12}{doc}" for name, (_, doc) in SUBCOMMANDS.items()]
        print("\n".join(lines), file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"rnnfast: error: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    module_name, _ = SUBCOMMANDS[argv[0]]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        print(f"rnnfast: error: command {argv[0]!r} is not available in this build", file=sys.stderr)
        return 2
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
