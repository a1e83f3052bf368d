"""The benchmark configurations (the canonical shapes, the test group, --shape), FLOP counts and test data."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

CELLS = ("rnn", "lstm", "gru")
# rnnfast's cell variants, for --cells and --shape (not in the default run): timed against their
# default cell by running both, e.g. --cells lstm,lstm_peephole. Only the rnnfast engine has them.
VARIANT_CELLS = {"lstm_peephole": ("lstm", dict(peepholes=True)),
                 "gru_reset_before": ("gru", dict(linear_before_reset=False)),
                 "lstm_reverse": ("lstm", dict(direction="reverse"))}
ALL_CELLS = CELLS + tuple(VARIANT_CELLS)
GATES = {"rnn": 1, "lstm": 4, "gru": 3, **{v: {"lstm": 4, "gru": 3}[c] for v, (c, _) in VARIANT_CELLS.items()}}


def check_default_cell(cell: str, engine: str) -> None:
    """Unsupported for a variant cell on an engine without it."""
    if cell in VARIANT_CELLS:
        raise Unsupported(f"{engine} has no {cell} (rnnfast's cell variant)")
KINDS = ("inference", "stream", "train")
DEFAULT_GROUPS = ("latency", "stream", "throughput", "train")  # the canonical set; 'smoke' is for tests
# groups of their own kind (not shapes x cells x engines), each run by its own module
OTHER_GROUPS = ("realistic", "ragged")


@dataclass(frozen=True)
class Spec:
    """One shape of one kind. For 'stream', T is the steps per call. The canonical shapes have input
    size = hidden size and one unidirectional layer; --shape and --model set the rest. ``source`` is
    the saved model file whose weights a --model configuration runs with."""

    name: str
    group: str
    kind: str
    B: int
    T: int
    H: int
    I: int | None = None  # noqa: E741  (None: = H)
    layers: int = 1
    bidirectional: bool = False
    source: tuple | None = None  # (saved model path, parameter-name prefix of its recurrent stack)

    @property
    def input_size(self) -> int:
        return self.H if self.I is None else self.I

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def label(self) -> str:
        prefix = _prefix(self.group, self.kind)
        extra = (f" I={self.I}" if self.I is not None and self.I != self.H else "") + \
            (f" L={self.layers}" if self.layers > 1 else "") + (" bidirectional" if self.bidirectional else "")
        if self.kind == "stream":
            return f"{prefix} B={self.B} H={self.H}{extra}"
        return f"{prefix} B={self.B} T={self.T} H={self.H}{extra}"

    @property
    def steps_per_call(self) -> int:
        """Streaming reports time per step: one timed call runs T steps."""
        return self.T if self.kind == "stream" else 1


def _prefix(group: str, kind: str) -> str:
    """The canonical groups imply their kind; others (smoke) name it, so that names stay unique."""
    return group if group in DEFAULT_GROUPS else f"{group}-{kind}"


def _spec(group: str, kind: str, B: int, T: int, H: int) -> Spec:
    prefix = _prefix(group, kind)
    name = f"{prefix}-B{B}-H{H}" if kind == "stream" else f"{prefix}-B{B}-T{T}-H{H}"
    return Spec(name, group, kind, B, T, H)


# group name -> its shapes; the canonical set is every group except 'smoke'
GROUPS: "OrderedDict[str, tuple[Spec, ...]]" = OrderedDict(
    latency=(_spec("latency", "inference", 1, 100, 256), _spec("latency", "inference", 1, 100, 512)),
    stream=(_spec("stream", "stream", 1, 100, 256),),
    throughput=(_spec("throughput", "inference", 64, 100, 512), _spec("throughput", "inference", 256, 50, 256)),
    train=(_spec("train", "train", 64, 100, 512), _spec("train", "train", 256, 50, 256)),
    # tiny shapes of every kind: for the smoke test, not part of the default run
    smoke=tuple(_spec("smoke", kind, 2, 5, 16) for kind in KINDS),
)


def select(names: list[str]) -> list[Spec]:
    """Expand group names ('latency') and exact spec names ('train-B64-T100-H512') in order."""
    by_name = {s.name: s for specs in GROUPS.values() for s in specs}
    out: list[Spec] = []
    for name in names:
        if name in GROUPS:
            found = GROUPS[name]
        elif name in by_name:
            found = (by_name[name],)
        else:
            known = list(GROUPS) + list(OTHER_GROUPS) + list(by_name)
            raise ValueError(f"--configs: expected one of {known}, got {name!r}")
        out += [s for s in found if s not in out]
    return out


def flops(spec: Spec, cell: str) -> float:
    """FLOPs of one step (stream) or one call: 2*T*B*G*H*(I+H) forward per layer and direction (a layer
    above the first reads I = directions*H), training counted as 3x forward."""
    steps = 1 if spec.kind == "stream" else spec.T
    forward = 0.0
    for layer in range(spec.layers):
        inputs = spec.input_size if layer == 0 else spec.directions * spec.H
        forward += spec.directions * 2.0 * steps * spec.B * GATES[cell] * spec.H * (inputs + spec.H)
    return 3.0 * forward if spec.kind == "train" else forward


def make_data(spec: Spec, seed: int = 0) -> dict:
    """Input x (T, B, I) and the fixed random output gradient g (T, B, directions*H), float32, time-major."""
    rng = np.random.default_rng(seed)
    return dict(x=rng.standard_normal((spec.T, spec.B, spec.input_size), dtype=np.float32),
                g=rng.standard_normal((spec.T, spec.B, spec.directions * spec.H), dtype=np.float32))


def numpy_weights(cell: str, hidden_size: int, input_size: int | None = None, seed: int = 0) -> OrderedDict:
    """PyTorch's default init, U(-1/sqrt(H), 1/sqrt(H)), under PyTorch's names (one layer, one direction)."""
    input_size = hidden_size if input_size is None else input_size
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(hidden_size)
    gh = GATES[cell] * hidden_size
    shapes = OrderedDict(weight_ih_l0=(gh, input_size), weight_hh_l0=(gh, hidden_size), bias_ih_l0=(gh,),
                         bias_hh_l0=(gh,))
    return OrderedDict((n, rng.uniform(-k, k, s).astype(np.float32)) for n, s in shapes.items())


def parse_shape(text: str) -> list[tuple[Spec, str]]:
    """``--shape CELL:B:T:I:H[:KIND]`` -> (spec, cell) pairs: inference and train, or the one KIND given."""
    parts = text.split(":")
    usage = f"--shape: expected CELL:B:T:I:H[:KIND] with CELL in {list(ALL_CELLS)}, positive integers and KIND " \
            f"in {list(KINDS)}, got {text!r}"
    if len(parts) not in (5, 6) or parts[0] not in ALL_CELLS or (len(parts) == 6 and parts[5] not in KINDS):
        raise ValueError(usage)
    try:
        B, T, I, H = (int(v) for v in parts[1:5])  # noqa: E741
    except ValueError:
        raise ValueError(usage) from None
    if min(B, T, I, H) < 1:
        raise ValueError(usage)
    kinds = (parts[5],) if len(parts) == 6 else ("inference", "train")
    return [(Spec(f"shape-{kind}-B{B}-T{T}-I{I}-H{H}", "shape", kind, B, T, H, I), parts[0]) for kind in kinds]


class Unsupported(Exception):
    """An engine cannot run this kind of configuration (the table shows '-')."""
