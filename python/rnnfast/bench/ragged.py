"""`rnnfast bench --configs ragged`: batches whose sequences have different lengths.

LSTM B=64 T=100 H=256 (input size = H), training (forward + backward) and inference, with lengths
drawn uniformly from 10..100 and with real line lengths (the lines of `rnnfast charlm train`'s
default corpus, the standard library's source, cut at T). Four ways to run the batch: rnnfast with
``lengths=``, rnnfast without (padding computed like data), torch packed (pack_padded_sequence) and
torch padded. The output gradient is zero past each length, as a masked loss makes it, so all four
give the same outputs at valid steps and the same weight gradients: that is the check before timing.
The targets (issue 21) apply to the uniform case, whose mean length is 56% of T.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from . import compare, configs, engine_rnnfast, peer_torch, timing
from . import ratio_rows as rr
from .configs import Spec, Unsupported

FULL = dict(B=64, T=100, H=256, repeat=9, corpus_chars=None)
QUICK = dict(B=4, T=10, H=16, repeat=3, corpus_chars=50_000)
CELL = "lstm"
TARGETS = (("with lengths / without lengths", "rnnfast no lengths", 0.65),
           ("with lengths / torch packed", "torch packed", 0.35))


def uniform_lengths(B: int, T: int, seed: int = 0) -> np.ndarray:
    """Uniform in T/10..T (10..100 for T=100)."""
    return np.random.default_rng(seed).integers(max(1, T // 10), T + 1, B).astype(np.int64)


def corpus_lengths(B: int, T: int, chars: int | None = None, seed: int = 0) -> np.ndarray:
    """Lengths of B random non-empty lines of charlm's default corpus, each at most T characters."""
    from ..charlm import stdlib_corpus

    text, _ = stdlib_corpus() if chars is None else stdlib_corpus(chars)
    lengths = np.array([len(line) for line in text.splitlines() if line.strip()], np.int64)
    picked = np.random.default_rng(seed).choice(lengths, B, replace=len(lengths) < B)
    return np.minimum(picked, T)


def _mask(lengths: np.ndarray, T: int) -> np.ndarray:
    return (np.arange(T)[:, None] < lengths[None, :]).astype(np.float32)[:, :, None]  # (T, B, 1)


class RnnfastCase:
    def __init__(self, spec: Spec, weights, data: dict, lengths, use_lengths: bool):
        self.model = engine_rnnfast.loaded_model(CELL, spec, weights, training=spec.kind == "train")
        self.training = spec.kind == "train"
        self.x, self.g, self.mask = data["x"], data["g"], data["mask"]
        self.lengths = lengths if use_lengths else None

    def run(self):
        if not self.training:
            return self.model.forward(self.x, lengths=self.lengths)[0], None
        self.model.zero_grad()
        y, _ = self.model.forward(self.x, lengths=self.lengths)
        return y, self.model.backward(self.g)

    def outputs(self) -> dict:
        y, grad_x = self.run()
        out = dict(y=np.asarray(y) * self.mask)
        if self.training:
            out["grad_x"] = np.asarray(grad_x) * self.mask
            out.update((f"grad:{n}", p.grad.copy()) for n, p in self.model.named_parameters())
        return out


class TorchCase:
    def __init__(self, spec: Spec, weights, data: dict, lengths, packed: bool, threads: int):
        torch = self.torch = peer_torch._import()
        peer_torch.set_threads(threads)
        self.training = spec.kind == "train"
        self.module = peer_torch.make_module(CELL, spec, weights).train(self.training)
        self.x = torch.from_numpy(data["x"].copy()).requires_grad_(self.training)
        self.g, self.mask = torch.from_numpy(data["g"]), data["mask"]
        self.lengths = torch.from_numpy(lengths) if packed else None
        self.T = spec.T

    def _forward(self):
        if self.lengths is None:
            return self.module(self.x)[0]
        nn = self.torch.nn.utils.rnn
        packed = nn.pack_padded_sequence(self.x, self.lengths, enforce_sorted=False)
        return nn.pad_packed_sequence(self.module(packed)[0], total_length=self.T)[0]

    def run(self):
        if not self.training:
            with self.torch.inference_mode():
                return self._forward()
        self.module.zero_grad(set_to_none=True)
        self.x.grad = None
        y = self._forward()
        (y * self.g).sum().backward()
        return y

    def outputs(self) -> dict:
        y = self.run()
        out = dict(y=y.detach().numpy() * self.mask)
        if self.training:
            out["grad_x"] = self.x.grad.numpy() * self.mask
            out.update((f"grad:{n}", p.grad.numpy()) for n, p in self.module.named_parameters())
        return out


def measure_batch(kind: str, lengths: np.ndarray, size: dict, threads: int, engines: list, what: str,
                  targets: bool) -> dict:
    spec = Spec(f"ragged-{kind}", "ragged", kind, size["B"], size["T"], size["H"])
    weights, _ = engine_rnnfast.shared_weights(CELL, spec)
    data = configs.make_data(spec)
    data["mask"] = _mask(lengths, spec.T)
    data["g"] = data["g"] * data["mask"]  # a masked loss: no gradient past a sequence's end
    engine_rnnfast.set_threads(threads)
    cases = {"rnnfast lengths": RnnfastCase(spec, weights, data, lengths, True),
             "rnnfast no lengths": RnnfastCase(spec, weights, data, lengths, False)}
    missing = {}
    if "torch" in engines:
        try:
            for name, packed in (("torch packed", True), ("torch padded", False)):
                cases[name] = TorchCase(spec, weights, data, lengths, packed, threads)
        except ImportError as exc:
            missing["torch"] = f"not installed ({exc})"
    check = compare.compare_cases(cases)
    stats = timing.measure(cases, size["repeat"], warmup=1, min_sample_time=0.0, gap=0.01)
    med = {n: st["median_s"] for n, st in stats.items() if "median_s" in st}
    ours = med.get("rnnfast lengths")
    comparisons = [rr.comparison(label, rr.ratio(ours, med.get(other)), "<=" if targets else None, target)
                   for label, other, target in TARGETS]
    comparisons.append(rr.comparison("with lengths / torch padded", rr.ratio(ours, med.get("torch padded"))))
    valid = float(lengths.mean() / spec.T)
    title = (f"ragged {kind} LSTM B={spec.B} T={spec.T} H={spec.H}, lengths {what} "
             f"(mean {lengths.mean():.0f}, {100 * valid:.0f}% of the steps valid)")
    return rr.row(f"{kind}-{what.split()[0]}", title, "s", dict(med, **missing), comparisons, check,
                  valid_fraction=valid, lengths=lengths.tolist())


def run(args) -> dict:
    size = QUICK if args.quick else FULL
    B, T = size["B"], size["T"]
    batches = [(f"uniform in {max(1, T // 10)}..{T}", True, lambda: uniform_lengths(B, T)),
               ("of stdlib source lines", False, lambda: corpus_lengths(B, T, size["corpus_chars"]))]
    rows = []
    for what, targets, make in batches:
        for kind in ("train", "inference"):
            t0 = time.perf_counter()
            try:
                row = measure_batch(kind, make(), size, args.threads, args.engines, what, targets)
            except (Unsupported, Exception) as exc:  # noqa: BLE001 - one broken case must not stop the others
                row = rr.error_row(f"{kind}-{what.split()[0]}", exc)
            rows.append(row)
            print(f"[ragged] {row['case']}: {row['status']} in {time.perf_counter() - t0:.0f}s", file=sys.stderr,
                  flush=True)
    engine_rnnfast.set_threads(args.threads)
    return dict(threads=args.threads, rows=rows)


def print_table(res: dict, out) -> None:
    rr.print_rows(f"ragged batches ({res['threads']} threads; ratios of medians; targets for the uniform lengths)",
                  res["rows"], out)


def markdown_lines(res: dict) -> list[str]:
    return rr.markdown_lines("Ragged batches", f"{res['threads']} threads; ratios of medians; the targets apply to "
                             "the uniform lengths (mean 56% of T).", res["rows"])


def mismatches(res: dict) -> list[str]:
    return rr.mismatches("ragged", res["rows"])
