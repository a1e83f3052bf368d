"""`rnnfast charlm`: a tiny end-to-end train + sample, exact resume, and every user-error path."""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from rnnfast import charlm
from rnnfast.checkpoint import load_checkpoint, save_checkpoint

TINY = ["--model", "lstm", "--layers", "1", "--hidden", "16", "--embedding", "8", "--seq-len", "8",
        "--batch-size", "4", "--val-frac", "0.1", "--sample-len", "0", "--log-interval", "100"]
TINY_HELD_OUT = [a for a in TINY if a not in ("--val-frac", "0.1")]  # validation from --valid FILE


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    lines = [f"def f{i}(x):\n    return x * {i} + {i % 7}\n\n" for i in range(60)]
    path = d / "code.py"
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """A checkpoint directory from a short run (shared by the tests that only read it)."""
    ckdir = tmp_path_factory.mktemp("ck")
    rc = charlm.main(["train", str(corpus), *TINY, "--steps", "6", "--eval-interval", "3",
                      "--checkpoint-dir", str(ckdir)])
    assert rc == 0
    return ckdir


def _run(capsys, argv):
    rc = charlm.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_train_end_to_end_then_sample(corpus, tmp_path, capsys):
    rc, out, err = _run(capsys, ["train", str(corpus), *TINY, "--steps", "6", "--eval-interval", "3",
                                 "--sample-len", "40", "--checkpoint-dir", str(tmp_path)])
    assert rc == 0, err
    assert "unigram model: validation loss" in out and "bits/char" in out and "tokens/s" in out
    names = set(os.listdir(tmp_path))
    assert {"best.ckpt", "last.ckpt"} <= names
    named = sorted(n for n in names if n.startswith("step"))
    assert [n[:10] for n in named] == ["step000003", "step000006"]
    last = load_checkpoint(tmp_path / "last.ckpt")
    assert last.step == 6 and last.extra["kind"] == "rnnfast.charlm"
    val = [h["val_loss"] for h in last.extra["trainer"]["history"] if h["kind"] == "eval"][-1]
    assert named[-1] == f"step000006_val{val:.4f}.ckpt"  # named with the step and validation loss
    assert out.rstrip("\n").count("\n") >= 5 and "sample (40 characters" in out

    argv = ["sample", str(tmp_path / "best.ckpt"), "--length", "30", "--seed", "3", "--prime", "def "]
    rc, s1, err = _run(capsys, argv)
    assert rc == 0, err
    rc, s2, _ = _run(capsys, argv)
    assert s1 == s2 and s1.startswith("def ") and len(s1) == len("def ") + 30 + 1
    rc, s3, _ = _run(capsys, argv[:-4] + ["--seed", "4", "--prime", "def "])
    assert s3 != s1


def test_sample_streams_each_character_as_it_is_generated(trained, monkeypatch):
    writes = []

    class Out:
        def write(self, s):
            writes.append(s)

        def flush(self):
            writes.append(None)
    monkeypatch.setattr(sys, "stdout", Out())
    assert charlm.main(["sample", str(trained / "last.ckpt"), "--length", "12", "--seed", "0"]) == 0
    chars = [w for w in writes if w is not None]
    assert len(chars) == 1 + 12 + 1  # the prime, one write per character, the final newline
    assert writes.count(None) >= 13  # flushed as it goes


def test_cli_resume_continues_exactly(corpus, tmp_path, capsys):
    opts = ["train", str(corpus), *TINY, "--dropout", "0.2", "--eval-interval", "4"]
    assert charlm.main(opts + ["--steps", "10", "--checkpoint-dir", str(tmp_path / "a")]) == 0
    assert charlm.main(opts + ["--steps", "6", "--checkpoint-dir", str(tmp_path / "b")]) == 0
    rc, out, err = _run(capsys, ["train", "--resume", str(tmp_path / "b" / "last.ckpt"), "--steps", "10"])
    assert rc == 0, err
    assert "resumed from" in out and "at step 6" in out
    a, b = load_checkpoint(tmp_path / "a" / "last.ckpt"), load_checkpoint(tmp_path / "b" / "last.ckpt")
    assert a.step == b.step == 10
    for k in a.model_state:
        np.testing.assert_array_equal(a.model_state[k], b.model_state[k])


def _one_line_error(rc, err, *needles):
    assert rc == 2
    assert "Traceback" not in err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith("rnnfast charlm: error: ")
    for n in needles:
        assert n in lines[0], lines[0]


def _write(path, data):
    path.write_bytes(data)
    return str(path)


def test_error_paths_print_one_line(corpus, trained, tmp_path, capsys):
    other = tmp_path / "other.ckpt"
    from rnnfast.nn import LSTM
    save_checkpoint(other, LSTM(3, 4), extra={"kind": "something.else"})
    cases = [
        (["train", str(tmp_path / "missing.txt")], ["missing.txt", "no such file"]),
        (["train", _write(tmp_path / "empty.txt", b"")], ["empty"]),
        (["train", _write(tmp_path / "bin.dat", b"ab\x00\x01cd" * 50)], ["binary"]),
        (["train", _write(tmp_path / "latin1.txt", "caf\xe9 ".encode("latin-1") * 50)], ["not valid utf-8"]),
        (["train", str(tmp_path)], ["is a directory"]),
        (["train", _write(tmp_path / "small.txt", b"print(1)\n" * 5)], ["too small", "--batch-size"]),
        (["train", str(corpus), *TINY, "--val-frac", "0.001"], ["validation split is too small", "--val-frac"]),
        (["train", str(corpus), "--hidden", "0"], ["--hidden must be at least 1"]),
        (["train", str(corpus), "--hidden", "big"], ["invalid int value"]),
        (["train", str(corpus), "--model", "transformer"], ["invalid choice"]),
        (["train", str(corpus), "--lr", "-1"], ["--lr"]),
        (["train", str(corpus), "--resume", str(other)], ["another model", "LSTM"]),
        (["train", "--resume", str(trained / "last.ckpt"), "--hidden", "32"], ["--hidden 32 differs", "16"]),
        (["train", _write(tmp_path / "new.txt", b"x = 1\n" * 500), "--resume", str(trained / "last.ckpt")],
         ["corpus differs"]),
        (["sample", str(trained / "best.ckpt"), "--prime", "déf"], ["'é'", "U+00E9"]),
        (["sample", str(trained / "best.ckpt"), "--temperature", "0"], ["--temperature must be > 0"]),
        (["sample", str(trained / "best.ckpt"), "--temperature", "-0.5"], ["--temperature must be > 0"]),
        (["sample", str(trained / "best.ckpt"), "--top-k", "0"], ["--top-k"]),
        (["sample", str(trained / "best.ckpt"), "--prime", ""], ["--prime is empty"]),
        (["sample", str(other)], ["another model"]),
        (["sample", str(corpus)], ["not", "checkpoint"]),
        (["sample", str(tmp_path / "nope.ckpt")], ["no such"]),
        (["sample", str(trained)], ["is a directory"]),
        (["sample"], ["CHECKPOINT"]),
        (["frobnicate"], ["invalid choice"]),
        ([], ["expected a command"]),
    ]
    for argv, needles in cases:
        rc, out, err = _run(capsys, argv)
        _one_line_error(rc, err, *needles)


def test_failed_runs_leave_existing_checkpoints_untouched(corpus, trained, tmp_path, capsys):
    before = {n: (trained / n).read_bytes() for n in os.listdir(trained)}
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes((trained / "last.ckpt").read_bytes()[:5000])
    failing = [
        ["train", str(tmp_path / "missing.txt"), "--checkpoint-dir", str(trained)],
        ["train", _write(tmp_path / "tiny.txt", b"a = 1\n"), "--checkpoint-dir", str(trained)],
        ["train", "--resume", str(trained / "last.ckpt"), "--seq-len", "99"],
        ["train", "--resume", str(truncated), "--checkpoint-dir", str(trained)],
    ]
    for argv in failing:
        rc, _, err = _run(capsys, argv)
        _one_line_error(rc, err)
    after = {n: (trained / n).read_bytes() for n in os.listdir(trained)}
    assert after == before


def test_diverging_run_reports_the_step_and_keeps_the_last_checkpoint(corpus, tmp_path, capsys):
    rc, _, err = _run(capsys, ["train", str(corpus), *TINY, "--steps", "40", "--eval-interval", "1",
                               "--optimizer", "sgd", "--lr", "1e30", "--grad-clip", "0",
                               "--checkpoint-dir", str(tmp_path)])
    assert rc == 1
    assert "Traceback" not in err and len(err.strip().split("\n")) == 1
    assert "training diverged at step 2" in err and "Lower the learning rate" in err
    last = load_checkpoint(tmp_path / "last.ckpt")  # written after step 1, intact
    assert last.step == 1 and all(np.isfinite(a).all() for a in last.model_state.values())


def test_command_line_entry_point_has_no_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in [os.path.dirname(os.path.dirname(
        charlm.__file__)), os.environ.get("PYTHONPATH", "")] if p))
    proc = subprocess.run([sys.executable, "-m", "rnnfast.cli", "charlm", "sample", str(tmp_path / "x.ckpt")],
                          capture_output=True, text=True, env=env, timeout=60)
    _one_line_error(proc.returncode, proc.stderr, "x.ckpt", "no such")


def test_default_corpus_is_the_standard_library():
    text, source = charlm.stdlib_corpus(max_chars=200_000)
    again, _ = charlm.stdlib_corpus(max_chars=200_000)
    assert text == again  # deterministic
    assert 200_000 <= len(text) < 2_000_000
    assert "standard library" in source and "def " in text and "import " in text


def _named(d):
    return sorted(n for n in os.listdir(d) if n.startswith("step"))


def test_keep_retains_the_most_recent_named_checkpoints_across_a_resume(corpus, tmp_path, capsys):
    rc, out, err = _run(capsys, ["train", str(corpus), *TINY, "--steps", "10", "--eval-interval", "2", "--keep", "2",
                                 "--checkpoint-dir", str(tmp_path)])
    assert rc == 0, err
    assert [n[:10] for n in _named(tmp_path)] == ["step000008", "step000010"]
    assert {"best.ckpt", "last.ckpt"} <= set(os.listdir(tmp_path))
    assert "the 2 most recent step*.ckpt" in out
    rc, _, err = _run(capsys, ["train", "--resume", str(tmp_path / "last.ckpt"), "--steps", "14", "--keep", "1"])
    assert rc == 0, err
    assert [n[:10] for n in _named(tmp_path)] == ["step000014"]  # the first run's files are pruned too
    rc, _, err = _run(capsys, ["train", str(corpus), *TINY, "--steps", "4", "--eval-interval", "2", "--keep", "0",
                               "--checkpoint-dir", str(tmp_path / "zero")])
    assert rc == 0, err
    assert sorted(os.listdir(tmp_path / "zero")) == ["best.ckpt", "last.ckpt"]


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    d = tmp_path_factory.mktemp("held_out")
    valid, test = d / "valid.py", d / "test.py"
    valid.write_text("".join(f"def g{i}(x):\n    return x * {i} + {i % 5}\n\n" for i in range(60, 75)), encoding="utf-8")
    test.write_text("".join(f"def h{i}(x):\n    return x + {i}\n\n" for i in range(75, 95)), encoding="utf-8")
    return valid, test


def test_valid_and_test_files_and_eval_agree(corpus, held_out, tmp_path, capsys):
    valid, test = held_out
    rc, out, err = _run(capsys, ["train", str(corpus), *TINY_HELD_OUT, "--steps", "6", "--eval-interval", "3",
                                 "--valid", str(valid), "--test", str(test), "--checkpoint-dir", str(tmp_path)])
    assert rc == 0, err
    assert f"validation {len(valid.read_text())} characters ({valid})" in out
    last = load_checkpoint(tmp_path / "last.ckpt")
    assert last.extra["hparams"]["val_frac"] is None
    val_loss = [h["val_loss"] for h in last.extra["trainer"]["history"] if h["kind"] == "eval"][-1]
    test_line = [line for line in out.splitlines() if line.startswith(f"test {test}: ")]
    assert len(test_line) == 1 and "with best.ckpt (step " in test_line[0], out

    # `charlm eval` scores exactly as training validated: the same number for the same weights and text
    rc, ev, err = _run(capsys, ["eval", str(tmp_path / "last.ckpt"), str(valid)])
    assert rc == 0, err
    assert ev.startswith(f"{valid}: {charlm._loss_text(val_loss)} over ")
    rc, ev, err = _run(capsys, ["eval", str(tmp_path / "best.ckpt"), str(test), "--threads", "1"])
    assert rc == 0, err
    bits = float(ev.split(": ", 1)[1].split(" bits/char")[0])
    assert test_line[0].startswith(f"test {test}: {bits:.4f} bits/char (")
    nats = float(ev.split("(", 1)[1].split(" nats/char")[0])
    assert abs(bits - nats / np.log(2)) < 1e-3 and 0 < bits < 8

    # a resumed run keeps its --valid file (and refuses another one)
    rc, out, err = _run(capsys, ["train", "--resume", str(tmp_path / "last.ckpt"), "--steps", "8"])
    assert rc == 0, err
    assert f"({os.path.abspath(valid)})" in out
    rc, _, err = _run(capsys, ["train", "--resume", str(tmp_path / "last.ckpt"), "--valid", str(test)])
    _one_line_error(rc, err, "--valid", "differs")


def test_eval_and_held_out_errors_print_one_line(corpus, trained, held_out, tmp_path, capsys):
    valid, _ = held_out
    ckpt = str(trained / "best.ckpt")
    cases = [
        (["eval", ckpt, str(tmp_path / "missing.txt")], ["missing.txt", "no such file"]),
        (["eval", ckpt, _write(tmp_path / "short.txt", b"def f")], ["too short", "--seq-len 8"]),
        (["eval", ckpt, _write(tmp_path / "greek.txt", "def \u03b1(x): pass\n".encode() * 20)],
         ["U+03B1", "vocabulary lacks"]),
        (["eval", ckpt], ["FILE"]),
        (["eval", str(tmp_path / "nope.ckpt"), str(valid)], ["no such"]),
        (["train", str(corpus), *TINY, "--valid", str(valid), "--val-frac", "0.2"], ["exclude each other"]),
        (["train", str(corpus), *TINY, "--test", _write(tmp_path / "t.txt", b"x")], ["--test", "too short"]),
        (["train", str(corpus), *TINY, "--keep", "-1"], ["--keep must be at least 0"]),
        (["train", "--resume", str(trained / "last.ckpt"), "--valid", str(valid)], ["drop --valid"]),
    ]
    for argv, needles in cases:
        rc, out, err = _run(capsys, argv)
        _one_line_error(rc, err, *needles)


def test_eval_skip_unknown_drops_and_counts_unknown_characters(corpus, trained, tmp_path, capsys):
    text = corpus.read_text()
    noisy = _write(tmp_path / "noisy.py", "".join(line + "\u03b1\u03b2\n" for line in text.splitlines()).encode())
    rc, _, err = _run(capsys, ["eval", str(trained / "best.ckpt"), noisy])
    _one_line_error(rc, err, "vocabulary lacks", "--skip-unknown")
    rc, out, err = _run(capsys, ["eval", str(trained / "best.ckpt"), noisy, "--skip-unknown"])
    assert rc == 0, err
    n = len(text.splitlines())
    assert out.rstrip().endswith(f"; {2 * n:,} unknown characters dropped before scoring")
    rc, clean, _ = _run(capsys, ["eval", str(trained / "best.ckpt"), str(corpus)])
    assert out.split(" over ")[0].split(": ", 1)[1] == clean.split(" over ")[0].split(": ", 1)[1]  # same text left


def test_failed_runs_leave_no_empty_checkpoint_directory(corpus, tmp_path, capsys, monkeypatch):
    ckdir = tmp_path / "new" / "charlm_checkpoints"
    rc, _, err = _run(capsys, ["train", str(corpus), *TINY, "--steps", "40", "--eval-interval", "100",
                               "--optimizer", "sgd", "--lr", "1e30", "--grad-clip", "0", "--checkpoint-dir", str(ckdir)])
    assert rc == 1 and "diverged" in err
    assert not (tmp_path / "new").exists()  # nothing was saved, so neither directory stays
    monkeypatch.setitem(sys.modules, "safetensors", None)  # as if it were not installed
    rc, _, err = _run(capsys, ["train", str(corpus), *TINY, "--steps", "2", "--checkpoint-dir", str(ckdir)])
    _one_line_error(rc, err, "safetensors")
    assert not (tmp_path / "new").exists()


def _cli_env():
    return dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(
        p for p in [os.path.dirname(os.path.dirname(charlm.__file__)), os.environ.get("PYTHONPATH", "")] if p))


def test_ctrl_c_saves_and_the_run_resumes_exactly(corpus, tmp_path, capsys):
    opts = ["train", str(corpus), *TINY, "--dropout", "0.2", "--eval-interval", "1000", "--log-interval", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "rnnfast.cli", "charlm", *opts, "--steps", "100000000",
                             "--checkpoint-dir", str(tmp_path / "a")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_cli_env())
    try:
        for line in proc.stdout:  # wait until training is under way, then press Ctrl-C
            if line.startswith("step 5 |"):
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().split("\n")) == 1, err
    last = tmp_path / "a" / "last.ckpt"
    assert f"saved {last}" in err and f"--resume {last}" in err
    step = load_checkpoint(last).step
    assert step >= 5 and f"interrupted after step {step};" in err

    # resuming the interrupted run ends exactly where an uninterrupted one does
    rc, _, err = _run(capsys, ["train", "--resume", str(last), "--steps", str(step + 3)])
    assert rc == 0, err
    assert charlm.main(opts + ["--steps", str(step + 3), "--checkpoint-dir", str(tmp_path / "b")]) == 0
    a, b = load_checkpoint(last), load_checkpoint(tmp_path / "b" / "last.ckpt")
    assert a.step == b.step == step + 3
    for k in a.model_state:
        np.testing.assert_array_equal(a.model_state[k], b.model_state[k])


def test_eval_with_reduced_inference_weights(corpus, trained, capsys):
    """--weights scores with int8 / bfloat16 recurrent weights: close to float32, said in the output."""
    losses = {}
    for weights in ("float32", "bfloat16", "int8"):
        rc, out, err = _run(capsys, ["eval", str(trained / "best.ckpt"), str(corpus), "--weights", weights])
        assert rc == 0, err
        assert out.rstrip().endswith(f"; {weights} inference weights") == (weights != "float32")
        losses[weights] = float(out.split(" bits")[0].rsplit(" ", 1)[1])
    assert abs(losses["int8"] - losses["float32"]) < 0.05 and abs(losses["bfloat16"] - losses["float32"]) < 0.05
    rc, _, err = _run(capsys, ["eval", str(trained / "best.ckpt"), str(corpus), "--weights", "int4"])
    assert rc == 2 and "--weights" in err
