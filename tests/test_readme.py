"""The README stays true: its Python blocks run verbatim as complete programs, and its shell
commands that are cheap to check name files that exist and arguments that parse."""
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

from rnnfast import charlm, cli

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEXT = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, re.S)


def _shell_commands():
    """Every command line of the bash blocks (comments dropped, `a && b` split) and every inline
    `rnnfast ...` span, with `x|y` alternatives expanded."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", TEXT, re.S):
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()
            lines += [part.strip() for part in line.split("&&") if part.strip()]
    prose = re.sub(r"```.*?```", "", TEXT, flags=re.S)
    lines += [" ".join(span.split()) for span in re.findall(r"`(rnnfast [^`]+)`", prose)]
    out = []
    for line in lines:
        words = shlex.split(line)
        if words[:2] == ["mpiexec", "-n"]:
            words = words[3:]  # `mpiexec -n N rnnfast ...`: the rnnfast command is what to check
        alt = next((i for i, w in enumerate(words) if "|" in w), None)
        if alt is None:
            out.append(words)
        else:
            out += [words[:alt] + [w] + words[alt + 1:] for w in words[alt].split("|")]
    return out


COMMANDS = _shell_commands()


def _env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in [os.path.dirname(os.path.dirname(charlm.__file__)), os.environ.get("PYTHONPATH", "")] if p))


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs_verbatim(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[index], f"README block {index}", "exec"), {"__name__": "__main__"})


def test_readme_has_examples_and_commands():
    assert len(BLOCKS) >= 3
    names = {" ".join(c[:3]) for c in COMMANDS}
    assert {"pip install .", "rnnfast charlm train", "rnnfast charlm sample", "rnnfast charlm eval"} <= names


def test_readme_files_exist():
    for words in COMMANDS:
        if words[:3] == ["pip", "install", "-r"]:
            assert (ROOT / words[3]).is_file(), words
        if words[0] == "python" and words[1].endswith(".py"):
            assert (ROOT / words[1]).is_file(), words
    for path in set(re.findall(r"`([\w./-]+/[\w.-]+\.(?:md|py|txt|toml|sh))`", TEXT)):
        assert (ROOT / path).is_file(), f"the README names {path}, which does not exist"
    assert (ROOT / "pyproject.toml").is_file() and (ROOT / "LICENSE").is_file()


@pytest.mark.parametrize("words", [c for c in COMMANDS if c[0] == "rnnfast" or
                                   (c[0] == "python" and c[1].startswith("examples/"))], ids=" ".join)
def test_readme_command_arguments_parse(words):
    """Commands too slow to run here are parsed: the options exist and take the values given."""
    if words[:2] == ["rnnfast", "charlm"]:
        charlm._parser().parse_args(words[2:])  # raises UserError on any unknown or bad argument
        return
    if words[0] == "rnnfast":
        assert words[1] in cli.SUBCOMMANDS, words
        argv = [sys.executable, "-m", "rnnfast.cli", *words[1:], "--help"]
    else:
        argv = [sys.executable, str(ROOT / words[1]), *words[2:], "--help"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=_env(), timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr  # argparse checks the arguments before --help


def test_readme_charlm_commands_run_after_a_short_training(tmp_path, monkeypatch, capsys):
    """`charlm sample` and `charlm eval` as printed, on a checkpoint in ./charlm_checkpoints."""
    monkeypatch.chdir(tmp_path)
    text = "".join(f"def f{i}(x):\n    return x * {i}\n\n" for i in range(80))
    pathlib.Path("corpus.py").write_text(text, encoding="utf-8")
    pathlib.Path("FILE").write_text(text[-400:], encoding="utf-8")
    assert charlm.main(["train", "corpus.py", "--layers", "1", "--hidden", "16", "--embedding", "8", "--seq-len",
                        "8", "--batch-size", "4", "--steps", "4", "--sample-len", "0"]) == 0
    ran = 0
    for words in COMMANDS:
        if words[:3] in (["rnnfast", "charlm", "sample"], ["rnnfast", "charlm", "eval"]):
            capsys.readouterr()
            assert charlm.main(words[2:]) == 0, words
            assert capsys.readouterr().out.strip()
            ran += 1
    assert ran >= 2
