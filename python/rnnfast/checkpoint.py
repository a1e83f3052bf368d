"""Checkpoints: weights, optimizer and schedule state, RNG states, step and caller data in one file.

Format: one safetensors file (https://github.com/huggingface/safetensors: a JSON header plus raw
arrays, no pickle, so loading an untrusted file cannot run code). Arrays:

- ``model.<name>``           every parameter, under PyTorch's names (``model.weight_ih_l0``, ...)
- ``optim.<i>.<name>``       the optimizer's per-parameter state (``optim.0.exp_avg``, ...)

Everything else is JSON in the header's ``__metadata__``: ``format`` ("rnnfast.checkpoint"),
``format_version``, and ``content``: step, optimizer type/hyperparameters/step, scheduler state,
the numpy Generator state of ``rng`` and of the model's own dropout generators, the caller's
``extra`` (vocabulary, config, ...), and a CRC-32 of every array; ``content_crc32`` guards the
content itself. So a truncated file, a flipped byte or a mismatched model is reported by name.

Saving is atomic (``rnnfast._atomic``): an interrupted save leaves the previous file intact.
Loading validates everything (format, version, checksums, keys, shapes, optimizer type, schedule,
RNG kind) before changing any object, and rolls back if applying still fails: never half-loaded.
safetensors is a dependency of rnnfast, imported on first use.
"""
from __future__ import annotations

import copy
import json
import numbers
import os
import struct
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from ._atomic import atomic_write
from .nn.module import Module

__all__ = ["save_checkpoint", "load_checkpoint", "save_weights", "load_weights", "Checkpoint",
           "FORMAT", "FORMAT_VERSION"]

FORMAT = "rnnfast.checkpoint"
FORMAT_VERSION = 1
_MODEL, _OPTIM = "model.", "optim."


def _safetensors_numpy():
    try:
        import safetensors.numpy as stn
    except ImportError:
        raise ImportError("rnnfast checkpoints need the safetensors package, a dependency of rnnfast that is "
                          "missing from this environment: pip install safetensors") from None
    return stn


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` or :func:`load_weights` read.

    Attributes
    ----------
    path : str
    step : int
        The step saved with it.
    extra : object
        The caller's JSON-able ``extra`` (numpy arrays come back as arrays).
    metadata : dict
        The whole JSON part of the file.
    model_state : OrderedDict of str to ndarray of float32
        The weights by parameter name, each with its parameter's shape.
    optimizer_state, scheduler_state, rng_state : dict or None
        The saved states (None when not saved).
    missing_keys, unexpected_keys : list of str
        Weights the model has and the file lacks, and the reverse (``strict=False`` only).
    skipped : list of str
        Parts requested but not restored (``strict=False`` only).
    """

    path: str
    step: int
    extra: object
    metadata: dict
    model_state: "OrderedDict[str, np.ndarray]"
    optimizer_state: dict | None = None
    scheduler_state: dict | None = None
    rng_state: dict | None = None
    missing_keys: list = field(default_factory=list)
    unexpected_keys: list = field(default_factory=list)
    skipped: list = field(default_factory=list)  # parts not restored (strict=False only)


# saving ----------------------------------------------------------------------------------------
def save_checkpoint(path, model, optimizer=None, scheduler=None, step: int = 0, rng=None, extra=None) -> None:
    """Write ``model``'s weights, and for resuming the other objects' state, to one file.

    The file is safetensors (weights and optimizer arrays) with a JSON header (everything else,
    and a CRC-32 of every array), written atomically: an interrupted save leaves the previous
    file intact.

    Parameters
    ----------
    path : str or os.PathLike
    model : Module
        Its ``named_parameters()`` (float32 arrays) and its dropout generators are saved.
    optimizer : Optimizer, optional
        An ``rnnfast.optim`` optimizer over (some of) the model's parameters.
    scheduler : object with ``state_dict()``, optional
        A learning-rate schedule.
    step : int, default 0
        Your step counter (>= 0).
    rng : numpy.random.Generator, optional
        E.g. the one that shuffles the data.
    extra : object, optional
        Any JSON-able value (numpy arrays allowed): vocabulary, configuration, ...

    Raises
    ------
    TypeError, ValueError
        An argument of the wrong kind, a negative step, or ``extra`` that is not JSON-able.
    """
    _check_module(model, "save_checkpoint")
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"save_checkpoint: step: expected an int >= 0, got {step!r}")
    stn = _safetensors_numpy()
    arrays = OrderedDict((_MODEL + name, p.data) for name, p in model.named_parameters())
    from . import __version__

    content = {"step": int(step), "model_type": type(model).__name__, "rnnfast_version": __version__,
               "optimizer": None, "scheduler": None, "rng": None,
               "model_keys": [k[len(_MODEL):] for k in arrays],
               "module_rngs": {name: get() for name, get, _ in _module_rngs(model)}}
    if optimizer is not None:
        content["optimizer"] = _optimizer_meta(optimizer, model, arrays)
    if scheduler is not None:
        if not callable(getattr(scheduler, "state_dict", None)):
            raise TypeError(f"save_checkpoint: scheduler: expected an object with state_dict(), "
                            f"got {type(scheduler).__name__}")
        content["scheduler"] = scheduler.state_dict()
    if rng is not None:
        content["rng"] = _check_generator(rng, "save_checkpoint").bit_generator.state
    content["extra"] = extra
    for part in ("extra", "scheduler"):
        try:
            _dumps(content[part])
        except (TypeError, ValueError) as exc:
            raise TypeError(f"save_checkpoint: {part}: not JSON-serialisable ({exc})") from None
    content["checksums"] = {k: _crc(a) for k, a in arrays.items()}
    text = _dumps(content)
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "content": text,
                "content_crc32": f"{zlib.crc32(text.encode('utf-8')):08x}"}
    atomic_write(path, stn.save(dict(arrays), metadata=metadata))


def save_weights(path, model) -> None:
    """Write only the model's weights (same format as :func:`save_checkpoint`).

    Parameters
    ----------
    path : str or os.PathLike
    model : Module
    """
    save_checkpoint(path, model)


def _optimizer_meta(optimizer, model, arrays) -> dict:
    if not callable(getattr(optimizer, "state_dict", None)) or not hasattr(optimizer, "params"):
        raise TypeError(f"save_checkpoint: optimizer: expected an rnnfast.optim optimizer, got {type(optimizer).__name__}")
    sd = optimizer.state_dict()
    names = _param_names(optimizer, model)
    for i, st in enumerate(sd["state"]):
        for k, v in st.items():
            arrays[f"{_OPTIM}{i}.{k}"] = np.ascontiguousarray(v, dtype=np.float32)
    return {"type": sd["type"], "hyper": sd["hyper"], "step": sd["step"], "num_params": len(sd["state"]),
            "state_keys": [sorted(st) for st in sd["state"]], "param_names": names}


def _param_names(optimizer, model) -> list:
    """The model's name of each optimized parameter (None for one the model does not own)."""
    by_id = {} if model is None else {id(p): n for n, p in model.named_parameters()}
    return [by_id.get(id(p)) for p in optimizer.params]


# loading ---------------------------------------------------------------------------------------
def load_checkpoint(path, model=None, optimizer=None, scheduler=None, rng=None, strict: bool = True) -> Checkpoint:
    """Read ``path`` and restore every object given.

    Nothing is changed unless everything is valid (format, version, checksums, keys, shapes,
    optimizer type, schedule, RNG kind). As in PyTorch, the optimizer takes the saved
    hyperparameters (lr, betas, ...), not those it was built with.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`save_checkpoint`.
    model : Module, optional
        Receives the weights and its dropout generators' states.
    optimizer : Optimizer, optional
    scheduler : object with ``load_state_dict()``, optional
    rng : numpy.random.Generator, optional
        Receives the saved generator state.
    strict : bool, default True
        The file must match exactly: missing or unexpected weights, or a requested part absent
        from the file, raise. With False the matching weights load and absent parts are listed
        in ``Checkpoint.skipped``. Shape, type and corruption errors always raise.

    Returns
    -------
    Checkpoint
        ``.step``, ``.extra``, ``.model_state``, ...

    Raises
    ------
    FileNotFoundError, PermissionError
    ValueError
        A damaged, truncated or foreign file, or one that does not fit the objects given.
    """
    ckpt = _read(path, allow_plain=False)
    plan = []
    if model is not None:
        plan += _plan_model(ckpt, model, strict)
        plan += _plan_module_rngs(ckpt, model, strict)
    if optimizer is not None:
        plan += _plan_optimizer(ckpt, optimizer, model, strict)
    if scheduler is not None:
        plan += _plan_scheduler(ckpt, scheduler, strict)
    if rng is not None:
        plan += _plan_rng(ckpt, rng, strict)
    _apply(plan)
    return ckpt


def load_weights(path, model, strict: bool = True) -> Checkpoint:
    """Load only the weights into ``model``.

    Parameters
    ----------
    path : str or os.PathLike
        A checkpoint, or a plain safetensors file whose tensor names are the model's parameter
        names (e.g. a PyTorch state dict saved with safetensors).
    model : Module
    strict : bool, default True
        Missing or unexpected weights raise; with False the matching ones load.

    Returns
    -------
    Checkpoint
    """
    _check_module(model, "load_weights")
    ckpt = _read(path, allow_plain=True)
    _apply(_plan_model(ckpt, model, strict))
    return ckpt


def _read(path, allow_plain: bool) -> Checkpoint:
    stn = _safetensors_numpy()
    where = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    header = _parse_header(raw, where)
    meta = header.get("__metadata__") or {}
    if meta.get("format") is None and allow_plain:
        arrays = _load_arrays(stn, raw, where)
        return Checkpoint(path=where, step=0, extra=None, metadata={"format": None},
                          model_state=OrderedDict(sorted(arrays.items())))
    content = _check_metadata(meta, where)
    arrays = _load_arrays(stn, raw, where)
    sums = content.get("checksums")
    if not isinstance(sums, dict):
        raise ValueError(f"{where}: corrupt checkpoint: the metadata has no array checksums")
    if set(sums) != set(arrays):
        raise ValueError(f"{where}: corrupt checkpoint: arrays {sorted(set(arrays) - set(sums))} are not listed "
                         f"in the metadata and {sorted(set(sums) - set(arrays))} are missing from the file")
    for k, a in arrays.items():
        if _crc(a) != sums[k]:
            raise ValueError(f"{where}: corrupt checkpoint: array {k!r} fails its checksum")
    names = [k[len(_MODEL):] for k in sorted(arrays) if k.startswith(_MODEL)]
    if isinstance(content.get("model_keys"), list) and sorted(content["model_keys"]) == sorted(names):
        names = content["model_keys"]  # the model's parameter order
    model_state = OrderedDict((k, arrays[_MODEL + k]) for k in names)
    opt = content.get("optimizer")
    opt_state = None
    if opt is not None:
        try:
            opt_state = {"type": opt["type"], "hyper": opt["hyper"], "step": opt["step"],
                         "state": [{k: arrays[f"{_OPTIM}{i}.{k}"] for k in keys}
                                   for i, keys in enumerate(opt["state_keys"])]}
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{where}: corrupt checkpoint: the optimizer section is incomplete ({exc!r})") from None
    step = content.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"{where}: corrupt checkpoint: step is {step!r}, expected an int >= 0")
    return Checkpoint(path=where, step=step, extra=content.get("extra"), metadata=content,
                      model_state=model_state, optimizer_state=opt_state,
                      scheduler_state=content.get("scheduler"), rng_state=content.get("rng"))


def _parse_header(raw: bytes, where: str) -> dict:
    """The safetensors JSON header: 8-byte little-endian length, then that many bytes of JSON."""
    if len(raw) < 8:
        raise ValueError(f"{where}: not a checkpoint: the file has {len(raw)} bytes (truncated or empty)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise ValueError(f"{where}: truncated or corrupt checkpoint: the header claims {n} bytes but the file "
                         f"has {len(raw) - 8} after the length field")
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{where}: corrupt checkpoint: the header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{where}: corrupt checkpoint: the header is not a JSON object")
    meta = header.get("__metadata__")
    if meta is not None and not isinstance(meta, dict):
        raise ValueError(f"{where}: corrupt checkpoint: __metadata__ is not a JSON object")
    return header


def _check_metadata(meta: dict, where: str) -> dict:
    fmt = meta.get("format")
    if fmt != FORMAT:
        raise ValueError(f"{where}: not an rnnfast checkpoint: format is {fmt!r}, expected {FORMAT!r}")
    version = meta.get("format_version")
    if not (isinstance(version, str) and version.isdigit()):
        raise ValueError(f"{where}: corrupt checkpoint: format_version is {version!r}")
    if int(version) != FORMAT_VERSION:
        newer = " (written by a newer rnnfast: upgrade)" if int(version) > FORMAT_VERSION else ""
        raise ValueError(f"{where}: unsupported checkpoint format version {version}, this rnnfast reads "
                         f"version {FORMAT_VERSION}{newer}")
    text = meta.get("content")
    if not isinstance(text, str) or meta.get("content_crc32") != f"{zlib.crc32(text.encode('utf-8')):08x}":
        raise ValueError(f"{where}: corrupt checkpoint: the metadata fails its checksum")
    try:
        content = json.loads(text, object_hook=_decode)
    except ValueError as exc:
        raise ValueError(f"{where}: corrupt checkpoint: the metadata is not valid JSON ({exc})") from None
    if not isinstance(content, dict):
        raise ValueError(f"{where}: corrupt checkpoint: the metadata is not a JSON object")
    return content


def _load_arrays(stn, raw: bytes, where: str) -> dict:
    try:
        return stn.load(raw)
    except Exception as exc:  # SafetensorError and friends: the arrays do not fit the header
        raise ValueError(f"{where}: truncated or corrupt checkpoint ({exc})") from None


# validation: each _plan_* checks one part and returns the actions that will apply it ----------
def _plan_model(ckpt: Checkpoint, model, strict: bool) -> list:
    _check_module(model, "load_checkpoint")
    own = OrderedDict(model.named_parameters())
    state = ckpt.model_state
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    ckpt.missing_keys, ckpt.unexpected_keys = missing, unexpected
    if strict and (missing or unexpected):
        raise KeyError(f"{ckpt.path}: the checkpoint does not match the model: missing keys {missing}, "
                       f"unexpected keys {unexpected}")
    staged = []
    for name, p in own.items():
        if name not in state:
            continue
        arr = state[name]
        if arr.shape != p.shape:
            raise ValueError(f"{ckpt.path}: {name}: the checkpoint has shape {arr.shape}, "
                             f"the model expects {p.shape}")
        if arr.dtype.kind != "f":
            raise TypeError(f"{ckpt.path}: {name}: expected a floating-point array, got dtype {arr.dtype}")
        staged.append((p, arr))

    def apply():
        for p, arr in staged:
            p.data = arr  # a float32 copy; bumps the version so packed weights are refreshed

    old = [(p, p.data) for p, _ in staged]

    def undo():
        for p, arr in old:
            p.data = arr
    return [(apply, undo)]


def _plan_optimizer(ckpt: Checkpoint, optimizer, model, strict: bool) -> list:
    sd = ckpt.optimizer_state
    if sd is None:
        return _absent(ckpt, "optimizer", strict)
    if not callable(getattr(optimizer, "load_state_dict", None)) or not hasattr(optimizer, "params"):
        raise TypeError(f"load_checkpoint: optimizer: expected an rnnfast.optim optimizer, got {type(optimizer).__name__}")
    if sd["type"] != type(optimizer).__name__:
        raise ValueError(f"{ckpt.path}: optimizer type mismatch: the checkpoint has {sd['type']!r} state, "
                         f"got a {type(optimizer).__name__}")
    n = len(optimizer.params)
    if len(sd["state"]) != n:
        raise ValueError(f"{ckpt.path}: the checkpoint's optimizer has {len(sd['state'])} parameters, "
                         f"the optimizer given has {n}")
    saved_names = ckpt.metadata["optimizer"].get("param_names") or [None] * n
    if model is not None:
        for i, (was, now) in enumerate(zip(saved_names, _param_names(optimizer, model))):
            if was is not None and now is not None and was != now:
                raise ValueError(f"{ckpt.path}: optimizer parameter {i} was {was!r} when saved but is {now!r} "
                                 "now (the parameters are in a different order)")
    for i, (p, st) in enumerate(zip(optimizer.params, sd["state"])):
        for k, arr in st.items():
            if arr.shape != p.shape:
                raise ValueError(f"{ckpt.path}: {_OPTIM}{i}.{k}: the checkpoint has shape {arr.shape}, "
                                 f"the optimizer's parameter {i} has shape {p.shape}")
    probe = copy.copy(optimizer)  # load_state_dict's own checks, on a shallow copy
    try:
        probe.load_state_dict(sd)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{ckpt.path}: invalid optimizer state: {exc}") from None
    old = optimizer.state_dict()
    return [(lambda: optimizer.load_state_dict(sd), lambda: optimizer.load_state_dict(old))]


def _plan_scheduler(ckpt: Checkpoint, scheduler, strict: bool) -> list:
    sd = ckpt.scheduler_state
    if sd is None:
        return _absent(ckpt, "scheduler", strict)
    if isinstance(sd, dict) and "type" in sd and sd["type"] != type(scheduler).__name__:
        raise ValueError(f"{ckpt.path}: scheduler type mismatch: the checkpoint has {sd['type']!r} state, "
                         f"got a {type(scheduler).__name__}")
    probe = copy.copy(scheduler)
    try:
        probe.load_state_dict(copy.deepcopy(sd))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{ckpt.path}: invalid scheduler state: {exc}") from None
    old = scheduler.state_dict()
    return [(lambda: scheduler.load_state_dict(copy.deepcopy(sd)), lambda: scheduler.load_state_dict(old))]


def _plan_rng(ckpt: Checkpoint, rng, strict: bool) -> list:
    _check_generator(rng, "load_checkpoint")
    if ckpt.rng_state is None:
        return _absent(ckpt, "rng", strict)
    return [_plan_generator_state(ckpt, "rng", ckpt.rng_state, type(rng.bit_generator).__name__,
                                  lambda: rng.bit_generator.state, _setter(rng))]


def _plan_module_rngs(ckpt: Checkpoint, model, strict: bool) -> list:
    saved = ckpt.metadata.get("module_rngs") or {}
    own = {name: (get, put) for name, get, put in _module_rngs(model)}
    if strict and set(saved) != set(own):
        raise KeyError(f"{ckpt.path}: the model's random generators do not match the checkpoint's: missing "
                       f"{sorted(set(own) - set(saved))}, unexpected {sorted(set(saved) - set(own))}")
    plan = []
    for name in sorted(set(saved) & set(own)):
        get, put = own[name]
        plan.append(_plan_generator_state(ckpt, f"random generator of module {name!r}", saved[name],
                                          get()["bit_generator"], get, put))
    return plan


def _plan_generator_state(ckpt, what, state, kind, get, put):
    saved_kind = state.get("bit_generator") if isinstance(state, dict) else None
    if saved_kind != kind:
        raise ValueError(f"{ckpt.path}: {what}: the checkpoint holds a {saved_kind!r} state, the generator "
                         f"given is a {kind!r}")
    try:  # a throwaway bit generator of the same kind validates the state
        bit_generator = getattr(np.random, str(kind))
        bit_generator().state = copy.deepcopy(state)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{ckpt.path}: {what}: invalid generator state ({exc})") from None
    old = get()
    return (lambda: put(copy.deepcopy(state)), lambda: put(old))


def _absent(ckpt: Checkpoint, part: str, strict: bool) -> list:
    if strict:
        raise KeyError(f"{ckpt.path}: the checkpoint has no {part} state (save it with save_checkpoint(..., "
                       f"{part}=...), or load with strict=False)")
    ckpt.skipped.append(part)
    return []


def _apply(plan) -> None:
    """Run every validated action; if one still fails, undo those already done (never half-loaded)."""
    done = []
    try:
        for apply, undo in plan:
            apply()
            done.append(undo)
    except BaseException:
        for undo in reversed(done):
            undo()
        raise


# helpers ---------------------------------------------------------------------------------------
def _check_module(model, where: str) -> None:
    if not isinstance(model, Module):
        raise TypeError(f"{where}: model: expected an rnnfast.nn.Module, got {type(model).__name__}")


def _check_generator(rng, where: str):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{where}: rng: expected a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def _setter(gen):
    def put(state):
        gen.bit_generator.state = state
    return put


def _module_rngs(model):
    """(name, get_state, set_state) of each submodule's own random generator (dropout masks), so a
    resumed run draws the same masks: modules offering get_rng_state/set_rng_state (nn.Dropout,
    and the recurrent layers' inter-layer dropout)."""
    out = []
    for name, m in model.named_modules():
        get, put = getattr(m, "get_rng_state", None), getattr(m, "set_rng_state", None)
        if callable(get) and callable(put):
            if isinstance(get(), dict) and "bit_generator" in get():  # a numpy generator's state
                out.append((name, get, put))
    return out


def _crc(a: np.ndarray) -> str:
    return f"{zlib.crc32(np.ascontiguousarray(a).data):08x}"


def _default(obj):
    """JSON for numpy values in states: generator keys (MT19937, Philox) are arrays."""
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": obj.dtype.str}
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _decode(d: dict):
    if "__ndarray__" in d and set(d) == {"__ndarray__", "dtype"}:
        return np.array(d["__ndarray__"], dtype=np.dtype(d["dtype"]))
    return d


def _dumps(obj) -> str:
    return json.dumps(obj, default=_default, ensure_ascii=False, allow_nan=True)
