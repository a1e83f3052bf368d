"""`rnnfast bench --model PATH`: the recurrent layers of a saved model, timed with the model's own weights.

PATH is an rnnfast checkpoint (``rnnfast.checkpoint``, e.g. a `rnnfast charlm train` .ckpt) or a plain
safetensors file of PyTorch-named parameters. Every recurrent stack in it (parameters
``<prefix>weight_hh_l<k>[_reverse]``) becomes one inference and one training configuration; the cell,
sizes, layers, directions and biases are read from the weight shapes.
"""
from __future__ import annotations

import os
import re
from collections import OrderedDict

from .configs import Spec

_RECURRENT = re.compile(r"^(?P<prefix>.*?)weight_hh_l(?P<layer>\d+)(?P<reverse>_reverse)?$")
_PARAMETER = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh)_l\d+(_reverse)?$")
_CELL_BY_GATES = {1: "rnn", 3: "gru", 4: "lstm"}


def read_state(path: str) -> tuple[OrderedDict, dict]:
    """(parameters by name, the checkpoint's extra data or {}); ValueError naming --model on any problem."""
    if not os.path.isfile(path):
        raise ValueError(f"--model {path}: no such file; give an rnnfast checkpoint or a safetensors file")
    from ..checkpoint import load_checkpoint

    try:
        ckpt = load_checkpoint(path)
        return OrderedDict(ckpt.model_state), ckpt.extra if isinstance(ckpt.extra, dict) else {}
    except ImportError as exc:
        raise ValueError(f"--model {path}: {exc}") from None
    except (ValueError, KeyError, TypeError, OSError) as first:
        try:
            from safetensors.numpy import load_file

            return OrderedDict(sorted(load_file(path).items())), {}
        except Exception:  # noqa: BLE001 - report the checkpoint reader's reason, it is the more specific
            raise ValueError(f"--model {path}: not an rnnfast checkpoint or safetensors file ({first})") from None


def _relu(extra: dict) -> bool:
    config = extra.get("config") if isinstance(extra.get("config"), dict) else {}
    return config.get("cell") == "rnn_relu" or config.get("nonlinearity") == "relu"


def stacks(state: dict, extra: dict, where: str) -> list[dict]:
    """Each recurrent stack: prefix, cell, input and hidden size, layers, bidirectional."""
    found: dict = {}
    for name in state:
        m = _RECURRENT.match(name)
        if m:
            info = found.setdefault(m["prefix"], dict(layers=0, bidirectional=False))
            info["layers"] = max(info["layers"], int(m["layer"]) + 1)
            info["bidirectional"] |= bool(m["reverse"])
    if not found:
        raise ValueError(f"--model {where}: no recurrent layer in it (no parameter named like weight_hh_l0)")
    out = []
    for prefix, info in found.items():
        w_hh, w_ih = state[prefix + "weight_hh_l0"], state.get(prefix + "weight_ih_l0")
        gates, H = w_hh.shape[0] // w_hh.shape[1], w_hh.shape[1]
        cell = _CELL_BY_GATES.get(gates) if w_hh.shape[0] == gates * H else None
        if cell is None or w_ih is None:
            raise ValueError(f"--model {where}: {prefix}weight_hh_l0 has shape {w_hh.shape}, expected (G*H, H) "
                             f"with G in {sorted(_CELL_BY_GATES)} and a matching weight_ih_l0")
        if cell == "rnn" and _relu(extra):
            raise ValueError(f"--model {where}: ReLU RNNs are not benchmarked (the peers run tanh)")
        out.append(dict(info, prefix=prefix, cell=cell, H=H, I=w_ih.shape[1]))
    return out


def specs(path: str, batch: int, steps: int) -> list[tuple[Spec, str]]:
    """(spec, cell) pairs: inference and training of every recurrent stack of the saved model."""
    state, extra = read_state(path)
    base = os.path.basename(path)
    out = []
    for s in stacks(state, extra, path):
        group = f"{base}:{s['prefix'].rstrip('.') or 'rnn'}"
        for kind in ("inference", "train"):
            name = f"model-{kind}-{group}-B{batch}-T{steps}"
            out.append((Spec(name, group, kind, batch, steps, s["H"], s["I"], s["layers"], s["bidirectional"],
                             source=(os.path.abspath(path), s["prefix"])), s["cell"]))
    return out


def weights(spec: Spec) -> OrderedDict:
    """The stack's parameters under the layer's own names (the prefix removed)."""
    path, prefix = spec.source
    state, _ = read_state(path)
    return OrderedDict((k[len(prefix):], v.astype("float32")) for k, v in state.items()
                       if k.startswith(prefix) and _PARAMETER.match(k[len(prefix):]))
