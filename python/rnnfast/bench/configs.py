"""The benchmark configurations (the canonical shapes and the test groups), their FLOP counts and the shared test data."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

CELLS = ("rnn", "lstm", "gru")
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
KINDS = ("inference", "stream", "train")
DEFAULT_GROUPS = ("latency", "stream", "throughput", "train")  # the canonical set; 'smoke' is for tests
# groups of their own kind (not shapes x cells x engines), each run by its own module
OTHER_GROUPS = ("realistic",)


@dataclass(frozen=True)
class Spec:
    """One shape of one kind; input size = hidden size. For 'stream', T is the steps per call."""

    name: str
    group: str
    kind: str
    B: int
    T: int
    H: int

    @property
    def label(self) -> str:
        prefix = _prefix(self.group, self.kind)
        if self.kind == "stream":
            return f"{prefix} B={self.B} H={self.H}"
        return f"{prefix} B={self.B} T={self.T} H={self.H}"

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
            known = list(GROUPS) + list(by_name)
            raise ValueError(f"--configs: expected one of {known}, got {name!r}")
        out += [s for s in found if s not in out]
    return out


def flops(spec: Spec, cell: str) -> float:
    """FLOPs of one step (stream) or one call: 2*T*B*G*H*(I+H) forward, training counted as 3x forward."""
    steps = 1 if spec.kind == "stream" else spec.T
    forward = 2.0 * steps * spec.B * GATES[cell] * spec.H * (spec.H + spec.H)
    return 3.0 * forward if spec.kind == "train" else forward


def make_data(spec: Spec, seed: int = 0) -> dict:
    """Input x (T, B, H) and the fixed random output gradient g, float32, time-major."""
    rng = np.random.default_rng(seed)
    shape = (spec.T, spec.B, spec.H)
    return dict(x=rng.standard_normal(shape, dtype=np.float32), g=rng.standard_normal(shape, dtype=np.float32))


def numpy_weights(cell: str, hidden_size: int, input_size: int | None = None, seed: int = 0) -> OrderedDict:
    """PyTorch's default init, U(-1/sqrt(H), 1/sqrt(H)), under PyTorch's names (one layer, one direction)."""
    input_size = hidden_size if input_size is None else input_size
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(hidden_size)
    gh = GATES[cell] * hidden_size
    shapes = OrderedDict(weight_ih_l0=(gh, input_size), weight_hh_l0=(gh, hidden_size), bias_ih_l0=(gh,),
                         bias_hh_l0=(gh,))
    return OrderedDict((n, rng.uniform(-k, k, s).astype(np.float32)) for n, s in shapes.items())


class Unsupported(Exception):
    """An engine cannot run this kind of configuration (the table shows '-')."""
