"""``rnnfast charlm``: train and sample a character-level language model (char-rnn, on rnnfast).

    rnnfast charlm train [FILE ...]        # no FILE: the Python standard library's own source
    rnnfast charlm sample CHECKPOINT
    rnnfast charlm eval CHECKPOINT FILE    # bits (and nats) per character on a text file

Ctrl-C during training saves ``last.ckpt`` (and says where); ``--resume`` continues from it.

    mpiexec -n 4 rnnfast charlm train --distributed [FILE ...]

trains one model data-parallel on 4 MPI ranks: ``--batch-size`` is the global batch (its streams
are split over the ranks), and rank 0 alone prints, validates and writes checkpoints.

User errors print one line ``rnnfast charlm: error: ...`` and exit with status 2, with no
traceback, and leave existing checkpoints untouched (nothing is written before the checks pass).
"""
from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys
import sysconfig

import numpy as np

PROG = "rnnfast charlm"
KIND = "rnnfast.charlm"
KIND_VERSION = 1
DEFAULT_CORPUS_CHARS = 4_000_000

# Training defaults (tuned so `rnnfast charlm train --time-budget 60` on 2 cores visibly learns).
DEFAULTS = dict(model="lstm", layers=2, hidden=256, embedding=64, seq_len=64, batch_size=32, dropout=0.0,
                optimizer="adam", lr=2e-3, grad_clip=5.0, val_frac=0.01, eval_interval=200, seed=0, keep=3)
# Options that define the model and the data stream: a resumed run must keep them.
RUN_KEYS = ("model", "layers", "hidden", "embedding", "seq_len", "batch_size", "dropout", "optimizer", "lr",
            "grad_clip", "val_frac", "seed")
OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd", "adagrad")


class UserError(Exception):
    """A mistake in the command line or its inputs: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        raise UserError(f"{message} (see `{self.prog} --help`)")


# ----------------------------------------------------------------------------------------
# entry point
# ----------------------------------------------------------------------------------------
def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(argv)
        if args.command is None:
            raise UserError("expected a command: train, sample or eval (see `rnnfast charlm --help`)")
        return args.func(args)
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def _parser():
    p = _Parser(prog=PROG, description="Train, sample or score a character-level language model (like char-rnn).")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    t = sub.add_parser("train", help="train on text files (default: the Python standard library's source)",
                       description="Train a character-level language model. With no FILE it trains on the "
                                   "Python standard library's own .py files (nothing to download).")
    t.add_argument("files", nargs="*", metavar="FILE", help="UTF-8 text files, concatenated")
    d = DEFAULTS
    t.add_argument("--model", choices=("rnn", "lstm", "gru"), help=f"recurrent cell (default {d['model']})")
    t.add_argument("--layers", type=int, help=f"stacked recurrent layers (default {d['layers']})")
    t.add_argument("--hidden", type=int, help=f"hidden size (default {d['hidden']})")
    t.add_argument("--embedding", type=int, help=f"character embedding size (default {d['embedding']})")
    t.add_argument("--seq-len", type=int, help=f"characters per truncated-BPTT segment (default {d['seq_len']})")
    t.add_argument("--batch-size", type=int, help=f"parallel text streams (default {d['batch_size']})")
    t.add_argument("--dropout", type=float,
                   help=f"dropout between layers and before the output (default {d['dropout']})")
    t.add_argument("--optimizer", choices=OPTIMIZERS, help=f"(default {d['optimizer']})")
    t.add_argument("--lr", type=float, help=f"learning rate (default {d['lr']})")
    t.add_argument("--grad-clip", type=float,
                   help=f"clip the gradient norm to this; 0 = off (default {d['grad_clip']})")
    t.add_argument("--val-frac", type=float,
                   help=f"share of the text (its end) used for validation (default {d['val_frac']}; not with --valid)")
    t.add_argument("--valid", metavar="FILE", help="validate on this text file instead of the end of the corpus "
                                                   "(then the whole corpus is for training)")
    t.add_argument("--test", metavar="FILE", help="after training, score this text file with the best checkpoint "
                                                  "(as `rnnfast charlm eval` does)")
    t.add_argument("--eval-interval", type=int,
                   help=f"evaluate and checkpoint every N steps (default {d['eval_interval']})")
    t.add_argument("--steps", type=int, help="stop at this total step count (a resumed run counts its earlier steps)")
    t.add_argument("--epochs", type=int, help="stop after this many passes over the text (default 50 when no "
                                               "--steps/--time-budget)")
    t.add_argument("--time-budget", type=float, metavar="SECONDS", help="stop after this many seconds of training")
    t.add_argument("--patience", type=int, help="stop after N evaluations without improvement (default: off)")
    t.add_argument("--checkpoint-dir", help="where checkpoints go (default ./charlm_checkpoints, or the resumed "
                                            "checkpoint's directory)")
    t.add_argument("--keep", type=int, metavar="N",
                   help=f"keep only the N most recent stepNNNNNN_val*.ckpt files (best.ckpt and last.ckpt are "
                        f"always kept; 0 = only those two; default {d['keep']})")
    t.add_argument("--resume", metavar="PATH", help="continue the run saved in this checkpoint (a Ctrl-C'd run "
                                                    "too: it saved last.ckpt)")
    t.add_argument("--seed", type=int, help=f"random seed (default {d['seed']})")
    t.add_argument("--threads", type=int, help="kernel threads (default: rnnfast's default, which divides the "
                                               "cores among the MPI ranks of a host)")
    t.add_argument("--distributed", action="store_true",
                   help="data-parallel over MPI: run under `mpiexec -n N`; --batch-size is the global batch, split "
                        "over the ranks (needs mpi4py: pip install 'rnnfast[mpi]')")
    t.add_argument("--sample-len", type=int, default=400,
                   help="characters to sample at the end (default 400; 0 = none)")
    t.add_argument("--log-interval", type=int, default=50, help="print a progress line every N steps (default 50)")
    t.set_defaults(func=_cmd_train)

    s = sub.add_parser("sample", help="generate text from a checkpoint",
                       description="Generate text from a checkpoint, streaming it as it is produced.")
    s.add_argument("checkpoint", metavar="CHECKPOINT")
    s.add_argument("--length", type=int, default=500, help="characters to generate (default 500)")
    s.add_argument("--temperature", type=float, default=0.8, help="> 0; lower is more conservative (default 0.8)")
    s.add_argument("--top-k", type=int, help="sample only among the k most likely characters")
    s.add_argument("--prime", help="text to start from (default: a newline)")
    s.add_argument("--seed", type=int, help="random seed for reproducible samples")
    s.add_argument("--threads", type=int, help="kernel threads")
    s.set_defaults(func=_cmd_sample)

    e = sub.add_parser("eval", help="bits per character of a checkpoint on a text file",
                       description="Score text files with a checkpoint: the mean loss per character in bits "
                                   "and nats, computed as training validates (the checkpoint's --seq-len and "
                                   "--batch-size, state carried across segments).")
    e.add_argument("checkpoint", metavar="CHECKPOINT")
    e.add_argument("files", nargs="+", metavar="FILE", help="UTF-8 text files, concatenated")
    e.add_argument("--skip-unknown", action="store_true",
                   help="drop characters the model's vocabulary lacks (counted in the output) instead of "
                        "stopping with an error")
    e.add_argument("--threads", type=int, help="kernel threads")
    e.add_argument("--weights", choices=("float32", "bfloat16", "int8"), default="float32",
                   help="inference weights of the recurrent layers (set_inference_weights; default float32)")
    e.set_defaults(func=_cmd_eval)
    return p


# ----------------------------------------------------------------------------------------
# corpus
# ----------------------------------------------------------------------------------------
def stdlib_corpus(max_chars: int = DEFAULT_CORPUS_CHARS):
    """(text, description): the standard library's top-level .py files in name order, whole files
    until ``max_chars`` (deterministic for a given Python installation)."""
    root = sysconfig.get_paths()["stdlib"]
    try:
        names = sorted(n for n in os.listdir(root) if n.endswith(".py"))
    except OSError as exc:
        raise UserError(f"cannot list the standard library at {root} ({exc.strerror}); give FILE(s) to train on")
    parts, total, used = [], 0, 0
    for name in names:
        try:
            with open(os.path.join(root, name), encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError):
            continue  # an unreadable file is simply not part of the corpus
        if not text.strip():
            continue
        parts.append(text if text.endswith("\n") else text + "\n")
        total += len(parts[-1])
        used += 1
        if total >= max_chars:
            break
    if not parts:
        raise UserError(f"found no readable .py files in the standard library at {root}; give FILE(s) to train on")
    ver = sysconfig.get_python_version()
    return "".join(parts), f"{used} .py files of the Python {ver} standard library ({root})"


def read_corpus(files):
    """(text, description) of the FILEs (concatenated), each checked by rnnfast.text.read_text."""
    from .text import read_text
    parts = []
    for path in files:
        if os.path.isdir(path):
            raise UserError(f"{path}: is a directory; give text files (e.g. {os.path.join(path, '*.txt')})")
        try:
            text = read_text(path)
        except FileNotFoundError:
            raise UserError(f"{path}: no such file; check the path (or give no FILE to train on the default corpus)")
        except PermissionError:
            raise UserError(f"{path}: permission denied; make the file readable")
        except OSError as exc:
            raise UserError(f"{path}: cannot read it ({exc.strerror or exc})")
        except ValueError as exc:
            raise UserError(str(exc))
        parts.append(text if text.endswith("\n") else text + "\n")
    n = len(files)
    return "".join(parts), f"{n} file{'s' if n > 1 else ''} ({', '.join(files[:3])}{', ...' if n > 3 else ''})"


def _fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# ----------------------------------------------------------------------------------------
# checks
# ----------------------------------------------------------------------------------------
def _positive(name, value, minimum=1):
    if value is not None and value < minimum:
        raise UserError(f"{name} must be at least {minimum}, got {value}")


def _check_train_args(a):
    for name, v in (("--layers", a.layers), ("--hidden", a.hidden), ("--embedding", a.embedding),
                    ("--seq-len", a.seq_len), ("--batch-size", a.batch_size), ("--eval-interval", a.eval_interval),
                    ("--epochs", a.epochs), ("--patience", a.patience), ("--threads", a.threads),
                    ("--log-interval", a.log_interval)):
        _positive(name, v)
    _positive("--keep", a.keep, 0)
    if a.valid is not None and a.val_frac is not None:
        raise UserError("--val-frac and --valid exclude each other: --valid FILE is the validation text, "
                        "--val-frac splits it off the corpus; give one")
    _positive("--steps", a.steps, 0)
    _positive("--sample-len", a.sample_len, 0)
    if a.dropout is not None and not 0.0 <= a.dropout < 1.0:
        raise UserError(f"--dropout must be in [0, 1), got {a.dropout}")
    if a.lr is not None and not (math.isfinite(a.lr) and a.lr > 0):
        raise UserError(f"--lr must be a positive number, got {a.lr}")
    if a.grad_clip is not None and not (math.isfinite(a.grad_clip) and a.grad_clip >= 0):
        raise UserError(f"--grad-clip must be >= 0 (0 turns clipping off), got {a.grad_clip}")
    if a.val_frac is not None and not 0.0 < a.val_frac <= 0.5:
        raise UserError(f"--val-frac must be in (0, 0.5], got {a.val_frac}")
    if a.time_budget is not None and not (math.isfinite(a.time_budget) and a.time_budget > 0):
        raise UserError(f"--time-budget must be a positive number of seconds, got {a.time_budget}")


def _load_charlm_checkpoint(path, what="checkpoint"):
    """The Checkpoint at ``path`` after checking it is a charlm one (weights not applied)."""
    from .checkpoint import load_checkpoint
    if os.path.isdir(path):
        raise UserError(f"{path}: is a directory; give a checkpoint file such as {os.path.join(path, 'best.ckpt')}")
    try:
        ckpt = load_checkpoint(path)
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what} file; give a .ckpt file written by `rnnfast charlm train`")
    except PermissionError:
        raise UserError(f"{path}: permission denied; make the {what} readable")
    except ImportError as exc:
        raise UserError(str(exc))
    except (ValueError, KeyError, TypeError, OSError) as exc:
        msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        raise UserError(f"{_strip_path(msg, path)}; give a checkpoint written by `rnnfast charlm train` "
                        f"(not {path})")
    extra = ckpt.extra if isinstance(ckpt.extra, dict) else {}
    if extra.get("kind") != KIND:
        model_type = ckpt.metadata.get("model_type", "unknown")
        raise UserError(f"{path}: is a checkpoint of another model ({model_type}, not a charlm model); give a "
                        f"checkpoint written by `rnnfast charlm train`")
    if extra.get("kind_version") != KIND_VERSION:
        raise UserError(f"{path}: charlm checkpoint version {extra.get('kind_version')!r} is not supported "
                        f"(expected {KIND_VERSION}); retrain with this rnnfast")
    return ckpt


def _strip_path(msg, path):
    """load_checkpoint prefixes messages with the path; keep exactly one mention of it."""
    p = os.fspath(path)
    return msg if msg.startswith(p) else f"{p}: {msg}"


def _threads(n):
    if n is not None:
        import rnnfast
        rnnfast.set_num_threads(n)


# ----------------------------------------------------------------------------------------
# train
# ----------------------------------------------------------------------------------------
def _cmd_train(a) -> int:
    _check_train_args(a)
    if a.distributed:
        return _cmd_train_distributed(a)
    return _cmd_train_checked(a)


def _cmd_train_distributed(a) -> int:
    """Every rank runs the same command; only rank 0 prints and writes. A failure on one rank ends the job."""
    try:
        from . import distributed as dist
        comm = dist.init()
    except ImportError as exc:
        raise UserError(str(exc))
    if a.batch_size is not None and a.batch_size < comm.Get_size():
        raise UserError(f"--batch-size {a.batch_size} is smaller than the {comm.Get_size()} MPI ranks; every rank "
                        f"needs at least one stream")
    with dist.abort_on_error():
        try:
            if comm.Get_rank() == 0:
                return _cmd_train_checked(a, comm)
            with open(os.devnull, "w") as quiet:
                return _cmd_train_checked(a, comm, quiet)
        except UserError as exc:
            if comm.Get_size() == 1:
                raise
            # maybe on this rank alone (a file missing on one host): the others must not wait for it
            print(f"{PROG}: error: (rank {comm.Get_rank()}) {exc}", file=sys.stderr, flush=True)
            comm.Abort(2)


def _cmd_train_checked(a, comm=None, out=None) -> int:
    try:
        import safetensors  # noqa: F401  (checkpoints are safetensors files: fail now, not at the first save)
    except ImportError:
        raise UserError("checkpoints need the safetensors package (a dependency of rnnfast): pip install safetensors")
    resume_ckpt = _load_charlm_checkpoint(a.resume, "--resume checkpoint") if a.resume else None
    hp = _hyperparameters(a, resume_ckpt)

    # the corpus: the FILEs, the resumed run's own corpus, or the standard library
    files = list(a.files)
    if resume_ckpt is not None and not files:
        files = list(resume_ckpt.extra["corpus"]["files"] or [])
    text, source = read_corpus(files) if files else stdlib_corpus()
    valid_file = _valid_file(a, hp, resume_ckpt)
    valid_text = read_corpus([valid_file])[0] if valid_file else None
    test_text = read_corpus([a.test])[0] if a.test else None
    from .text import Vocab
    if resume_ckpt is not None:
        if _fingerprint(text) != resume_ckpt.extra["corpus"]["sha256"]:
            raise UserError(f"the corpus differs from the one the --resume checkpoint was trained on "
                            f"({resume_ckpt.extra['corpus']['source']}); resume on the same text")
        if valid_text is not None and _fingerprint(valid_text) != resume_ckpt.extra["corpus"].get("valid_sha256"):
            raise UserError(f"--valid {valid_file}: differs from the validation text the --resume checkpoint used; "
                            f"resume with the same --valid file")
        vocab = Vocab.from_dict(resume_ckpt.extra["vocab"])
    else:
        # the validation and test characters belong to the vocabulary too, so every one can be scored
        vocab = Vocab.build(text + (valid_text or "") + (test_text or ""), specials=(), pad_token=None,
                            unk_token=None, bos_token=None, eos_token=None)
    ids = vocab.encode(text)

    if valid_text is None:
        train_ids, val_ids = _split(ids, hp)
    else:
        train_ids, val_ids = ids, _encode_known(vocab, valid_text, f"--valid {valid_file}")
    test_ids = _encode_known(vocab, test_text, f"--test {a.test}") if test_text is not None else None
    from .data import LMStream
    B, T = hp["batch_size"], hp["seq_len"]
    if len(train_ids) < B * T + 1:
        raise UserError(f"the corpus is too small: {len(train_ids)} training characters, but --batch-size {B} x "
                        f"--seq-len {T} needs at least {B * T + 1}; give more text or lower --batch-size/--seq-len")
    train = LMStream(train_ids, B, T)
    val = _scoring_stream(val_ids, hp, f"--valid {valid_file}" if valid_file else None)
    if test_ids is not None:
        _scoring_stream(test_ids, hp, f"--test {a.test}")  # too short: say so now, not after training

    ckpt_dir = a.checkpoint_dir or (os.path.dirname(os.path.abspath(a.resume)) if a.resume else "charlm_checkpoints")
    if os.path.exists(ckpt_dir) and not os.path.isdir(ckpt_dir):
        raise UserError(f"--checkpoint-dir {ckpt_dir}: exists and is not a directory; choose another path")
    root = comm is None or comm.Get_rank() == 0
    created = _missing_dirs(ckpt_dir) if root else []  # rank 0 alone creates (and removes) the directory
    try:
        if root:
            os.makedirs(ckpt_dir, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--checkpoint-dir {ckpt_dir}: cannot create it ({exc.strerror}); choose another path")
    try:
        if root and not os.access(ckpt_dir, os.W_OK | os.X_OK):
            raise UserError(f"--checkpoint-dir {ckpt_dir}: not writable; choose another path")
        return _train(a, hp, resume_ckpt, files, text, source, valid_file, valid_text, vocab, train_ids, train,
                      val, len(val_ids), test_ids, ckpt_dir, comm, out or sys.stdout)
    finally:
        _remove_if_empty(created)  # a run that saved nothing leaves no empty directory behind


def _train(a, hp, resume_ckpt, files, text, source, valid_file, valid_text, vocab, train_ids, train, val,
           n_val, test_ids, ckpt_dir, comm=None, out=sys.stdout) -> int:
    budget = dict(max_steps=a.steps, time_budget=a.time_budget, epochs=a.epochs)
    if all(v is None for v in budget.values()):
        budget["epochs"] = 50  # char-rnn's max_epochs
    _threads(a.threads)
    B, T = hp["batch_size"], hp["seq_len"]

    from .models import LanguageModel
    model = LanguageModel(len(vocab), hp["embedding"], hp["hidden"], hp["layers"], hp["model"],
                          dropout=hp["dropout"], seed=hp["seed"])
    optimizer = _optimizer(hp["optimizer"], model, hp["lr"])
    unigram = _unigram_loss(train_ids, val, len(vocab))
    n_params = sum(p.size for p in model.parameters())
    if comm is not None:
        from .distributed import ShardedStream
        train = ShardedStream(train, comm.Get_rank(), comm.Get_size())
    print(f"corpus: {len(text):,} characters from {source}", file=out)
    print(f"vocabulary: {len(vocab)} characters; train {len(train_ids):,} / validation {n_val:,} characters"
          + (f" ({valid_file})" if valid_file else ""), file=out)
    print(f"model: {hp['model'].upper()} {hp['layers']} x {hp['hidden']}, embedding {hp['embedding']}, "
          f"{n_params:,} parameters; batch {B} x seq {T}; {hp['optimizer']} lr {hp['lr']:g}"
          + (f", dropout {hp['dropout']:g}" if hp["dropout"] else "")
          + (f", grad clip {hp['grad_clip']:g}" if hp["grad_clip"] else ""), file=out)
    print(f"unigram model: validation loss {unigram:.4f} nats ({unigram / math.log(2):.3f} bits/char); losses are "
          f"per character, val_bpc = bits per character", file=out)

    from .train import Trainer, TrainingDiverged, TrainingInterrupted
    # the evaluation interval and retention are not part of the run's identity: a resumed run may change them
    eval_interval = a.eval_interval or (resume_ckpt.extra.get("eval_interval") if resume_ckpt else None) \
        or DEFAULTS["eval_interval"]
    keep = a.keep if a.keep is not None else DEFAULTS["keep"]
    corpus = {"files": [os.path.abspath(f) for f in files] or None, "source": source,
              "sha256": _fingerprint(text), "chars": len(text)}
    if valid_file:
        corpus.update(valid_file=os.path.abspath(valid_file), valid_sha256=_fingerprint(valid_text))
    extra = {"kind": KIND, "kind_version": KIND_VERSION, "hparams": hp, "config": model.config,
             "eval_interval": eval_interval, "vocab": vocab.to_dict(), "unigram_val_loss": unigram, "corpus": corpus}
    trainer = Trainer(
        model, optimizer, _lm_step, train, eval_fn=lambda m: _evaluate(m, val), monitor="val_loss",
        grad_clip=hp["grad_clip"] or None, eval_every=eval_interval,
        patience=a.patience, checkpoint_dir=ckpt_dir, checkpoint_name="step{step:06d}_val{val_loss:.4f}.ckpt",
        keep_checkpoints=keep, extra=extra, log_every=a.log_interval, distributed=comm is not None,
        seed=hp["seed"], log=None if comm is None or comm.Get_rank() == 0 else (lambda line: None), **budget)
    if resume_ckpt is not None:
        try:
            trainer.resume(a.resume)
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"cannot resume from {a.resume}: {exc}")
        print(f"resumed from {a.resume} at step {trainer.step}", file=out)

    err = sys.stderr if trainer.rank == 0 else out  # every rank stops together; rank 0 says so
    try:
        trainer.fit()
    except TrainingDiverged as exc:
        print(f"{PROG}: error: {exc}", file=err)
        return 1
    except TrainingInterrupted as exc:
        launch = f"mpiexec -n {trainer.world_size} " if comm is not None else ""
        if exc.path:
            print(f"{PROG}: interrupted after step {exc.step}; saved {exc.path}; continue with "
                  f"`{launch}rnnfast charlm train{' --distributed' if comm is not None else ''} --resume {exc.path}`",
                  file=err)
        else:
            print(f"{PROG}: interrupted before the first training step; nothing to save", file=err)
        return 130

    _report(trainer, unigram, ckpt_dir, keep, out)
    if trainer.rank != 0:
        return 0  # rank 0 samples and tests
    if a.sample_len:
        prime = "\n" if "\n" in vocab else vocab.itos[0]
        print(f"sample ({a.sample_len} characters, temperature 0.8, from the last weights):", file=out)
        _stream_sample(model, vocab, prime, a.sample_len, 0.8, None, hp["seed"], out)
    if test_ids is not None:
        best = os.path.join(ckpt_dir, "best.ckpt")
        which = "the last weights"
        if trainer.best_step is not None and os.path.exists(best):
            model.load_state_dict(_load_charlm_checkpoint(best).model_state)
            which = f"best.ckpt (step {trainer.best_step})"
        model.eval()
        scored = _evaluate(model, _scoring_stream(test_ids, hp, f"--test {a.test}"))
        print(f"test {a.test}: {_loss_text(scored['val_loss'])} with {which}", file=out)
    return 0


def _valid_file(a, hp, resume_ckpt):
    """The --valid file, or the resumed run's; None when validation is the end of the corpus."""
    if resume_ckpt is None:
        return a.valid
    stored = resume_ckpt.extra["corpus"].get("valid_file")
    if hp["val_frac"] is not None and a.valid is not None:
        raise UserError(f"--valid {a.valid}: the resumed run validates on the last {hp['val_frac']:g} of its "
                        f"corpus; drop --valid to resume")
    return a.valid or stored


def _encode_known(vocab, text, what, hint="the vocabulary comes from the run that started training"):
    """Ids of ``text``; a character outside the vocabulary is a UserError naming it."""
    unknown = _unknown_chars(vocab, text)
    if unknown:
        shown = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in unknown[:5])
        raise UserError(f"{what}: contains {len(unknown)} character(s) the model's vocabulary lacks ({shown}); "
                        f"{hint}")
    return vocab.encode(text)


def _unknown_chars(vocab, text):
    return sorted(set(text) - set(vocab.itos))


def _scoring_stream(ids, hp, what):
    """Validation-style batches of ``ids``: up to --batch-size streams of --seq-len segments."""
    from .data import LMStream
    T = hp["seq_len"]
    batch = min(hp["batch_size"], (len(ids) - 1) // T)
    if batch < 1:
        if what is None:
            raise UserError(f"the validation split is too small: {len(ids)} characters (--val-frac "
                            f"{hp['val_frac']}), but one sequence needs --seq-len {T} + 1; raise --val-frac, "
                            f"lower --seq-len or give more text")
        raise UserError(f"{what}: too short: {len(ids)} characters, but one sequence needs --seq-len {T} + 1; "
                        f"give more text")
    return LMStream(ids, batch, T)


def _missing_dirs(path):
    """The directories ``os.makedirs(path)`` would create, deepest first."""
    out = []
    path = os.path.abspath(path)
    while not os.path.exists(path):
        out.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return out


def _remove_if_empty(dirs):
    for d in dirs:
        try:
            os.rmdir(d)  # fails (and stops) on the first directory with something in it
        except OSError:
            return


def _loss_text(loss):
    return f"{loss / math.log(2):.4f} bits/char ({loss:.4f} nats/char)"


def _hyperparameters(a, resume_ckpt) -> dict:
    """The run's options: the command line's over DEFAULTS, or the resumed run's (conflicts are errors)."""
    given = {k: getattr(a, k) for k in RUN_KEYS if getattr(a, k) is not None}
    if resume_ckpt is None:
        hp = dict(DEFAULTS)
        hp.update(given)
        if a.valid is not None:
            hp["val_frac"] = None  # validation is the --valid file, not a share of the corpus
        return {k: hp[k] for k in RUN_KEYS}
    hp = dict(resume_ckpt.extra["hparams"])
    for k, v in given.items():
        if hp.get(k) != v:
            flag = "--" + k.replace("_", "-")
            raise UserError(f"{flag} {v} differs from the resumed run's {hp.get(k)}; drop {flag} to resume "
                            f"(a resumed run keeps its model and data options)")
    return hp


def _split(ids, hp):
    """The end of the text is the validation set (contiguous, as char-rnn splits)."""
    n_val = int(len(ids) * hp["val_frac"])
    return ids[: len(ids) - n_val], ids[len(ids) - n_val:]


def _optimizer(name, model, lr):
    from . import optim
    cls = {"adam": optim.Adam, "adamw": optim.AdamW, "rmsprop": optim.RMSprop, "sgd": optim.SGD,
           "adagrad": optim.Adagrad}[name]
    if name == "rmsprop":
        return cls(model.parameters(), lr=lr, alpha=0.95)  # char-rnn's decay rate
    return cls(model.parameters(), lr=lr)


def _lm_step(model, batch, state):
    """One truncated-BPTT step: the hidden state carries over from the previous batch."""
    from .losses import cross_entropy
    x, y = batch
    logits, state = model(x, state)
    loss, grad = cross_entropy(logits, y)
    model.backward(grad)
    return loss, y.size, state


def _evaluate(model, val) -> dict:
    """Mean validation loss over the whole validation stream, carrying the state as in training."""
    from .losses import cross_entropy
    val.reset()
    total, count, state = 0.0, 0, None
    for x, y in val:
        logits, state = model(x, state)
        loss, _ = cross_entropy(logits, y)
        total += loss * y.size
        count += y.size
    loss = total / count
    return {"val_loss": loss, "val_bpc": loss / math.log(2)}


def _unigram_loss(train_ids, val, vocab_size) -> float:
    """Validation loss of a model that ignores context: add-one smoothed character frequencies."""
    counts = np.bincount(train_ids, minlength=vocab_size).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    val.reset()
    targets = np.concatenate([y.reshape(-1) for _, y in val])
    return float(-logp[targets].mean())


def _report(trainer, unigram, ckpt_dir, keep, out):
    evals = [h for h in trainer.history if h.get("kind") == "eval" and "val_loss" in h]
    ln2 = math.log(2)
    if trainer.train_seconds > 0:
        print(f"speed: {trainer.tokens_seen / trainer.train_seconds:,.0f} tokens/s over {trainer.tokens_seen:,} "
              f"training characters ({trainer.train_seconds:.1f}s in training steps, evaluation excluded)", file=out)
    if trainer.world_size > 1 and trainer.allreduce_steps:
        import rnnfast
        print(f"distributed: {trainer.world_size} ranks x {rnnfast.get_num_threads()} thread(s); gradient allreduce "
              f"{1e3 * trainer.allreduce_seconds / trainer.allreduce_steps:.2f} ms per step on rank 0 (waiting for "
              f"the slowest rank included)", file=out)
    if evals:
        last = evals[-1]
        print(f"validation loss at step {last['step']}: {last['val_loss']:.4f} nats ({last['val_loss'] / ln2:.3f} "
              f"bits/char); unigram model: {unigram:.4f} nats ({unigram / ln2:.3f} bits/char)", file=out)
        if trainer.best_value is not None:
            print(f"best: {trainer.best_value:.4f} nats ({trainer.best_value / ln2:.3f} bits/char) at step "
                  f"{trainer.best_step}; checkpoints in {ckpt_dir} (best.ckpt, last.ckpt and the {keep} most "
                  f"recent step*.ckpt)", file=out)


# ----------------------------------------------------------------------------------------
# sample
# ----------------------------------------------------------------------------------------
def _cmd_sample(a) -> int:
    if a.length < 0:
        raise UserError(f"--length must be >= 0, got {a.length}")
    if not (math.isfinite(a.temperature) and a.temperature > 0):
        raise UserError(f"--temperature must be > 0 (e.g. 0.8; lower is more conservative), got {a.temperature}")
    if a.top_k is not None and a.top_k < 1:
        raise UserError(f"--top-k must be at least 1, got {a.top_k}")
    _positive("--threads", a.threads)
    _, model, vocab = _load_model(a.checkpoint)
    prime = a.prime if a.prime is not None else ("\n" if "\n" in vocab else vocab.itos[0])
    if prime == "":
        raise UserError("--prime is empty; give at least one character (or leave --prime out)")
    for ch in prime:
        if ch not in vocab:
            raise UserError(f"--prime contains {ch!r} (U+{ord(ch):04X}), which never occurs in the training text; "
                            f"use characters the model knows")
    _threads(a.threads)
    _stream_sample(model, vocab, prime, a.length, a.temperature, a.top_k, a.seed, sys.stdout)
    return 0


def _load_model(path):
    """(checkpoint, LanguageModel with its weights, Vocab) of a charlm checkpoint."""
    ckpt = _load_charlm_checkpoint(path)
    from .models import LanguageModel
    from .text import Vocab
    vocab = Vocab.from_dict(ckpt.extra["vocab"])
    model = LanguageModel.from_config(ckpt.extra["config"])
    try:
        model.load_state_dict(ckpt.model_state)
    except (KeyError, ValueError) as exc:
        raise UserError(f"{path}: the weights do not fit the model it describes ({exc}); the file is damaged")
    return ckpt, model, vocab


# ----------------------------------------------------------------------------------------
# eval
# ----------------------------------------------------------------------------------------
def _cmd_eval(a) -> int:
    _positive("--threads", a.threads)
    ckpt, model, vocab = _load_model(a.checkpoint)
    text, source = read_corpus(a.files)
    label = a.files[0] if len(a.files) == 1 else source
    hp = ckpt.extra["hparams"]
    unknown = _unknown_chars(vocab, text) if a.skip_unknown else []
    dropped = 0
    if unknown:
        kept = text.translate({ord(c): None for c in unknown})
        dropped, text = len(text) - len(kept), kept
    ids = _encode_known(vocab, text, label, hint="--skip-unknown drops them (and says how many)")
    _threads(a.threads)
    model.eval()
    model.rnn.set_inference_weights(a.weights)
    stream = _scoring_stream(ids, hp, label)
    loss = _evaluate(model, stream)["val_loss"]
    scored = len(stream) * stream.batch_size * stream.seq_len
    print(f"{label}: {_loss_text(loss)} over {scored:,} of its {len(ids):,} characters "
          f"({stream.batch_size} streams x {stream.stream_len:,}; checkpoint step {ckpt.step})"
          + (f"; {dropped:,} unknown characters dropped before scoring" if dropped else "")
          + (f"; {a.weights} inference weights" if a.weights != "float32" else ""), file=sys.stdout)
    return 0


def _stream_sample(model, vocab, prime, length, temperature, top_k, seed, out):
    """Write the prime, then each generated character as soon as it exists."""
    itos = vocab.itos
    out.write(prime)
    out.flush()
    write, flush = out.write, out.flush

    def emit(token):
        write(itos[token])
        flush()

    model.generate(vocab.encode(prime), length, temperature=temperature, top_k=top_k, seed=seed,
                   stream_callback=emit)
    write("\n")
    flush()
