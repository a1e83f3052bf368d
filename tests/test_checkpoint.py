"""Checkpoints: round trips, exact resume, atomic writes, and clear errors that never half-load."""
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rnnfast._atomic as atomic
from rnnfast import checkpoint as ck
from rnnfast import losses, nn, optim
from helpers import fail_half_write

safetensors_numpy = pytest.importorskip("safetensors.numpy")  # the optional "checkpoint" extra

V, E, H, B, T = 11, 6, 8, 4, 7


class TinyLM(nn.Module):
    """Embedding -> 2-layer LSTM (inter-layer dropout) -> Dropout -> Linear: every kind of state."""

    def __init__(self, seed=0, hidden=H, bias=True):
        super().__init__()
        self.emb = nn.Embedding(V, E, padding_idx=0, seed=seed)
        self.lstm = nn.LSTM(E, hidden, num_layers=2, dropout=0.25, batch_first=True, bias=bias, seed=seed + 1)
        self.drop = nn.Dropout(0.2, seed=seed + 2)
        self.head = nn.Linear(hidden, V, seed=seed + 3)

    def forward(self, ids):
        y, _ = self.lstm(self.emb(ids))
        return self.head(self.drop(y))

    def backward(self, grad):
        self.emb.backward(self.lstm.backward(self.drop.backward(self.head.backward(grad))))


def make(seed=0, opt="Adam", sched="StepLR", **opt_kw):
    model = TinyLM(seed)
    kw = {"Adam": dict(lr=0.02, amsgrad=True), "SGD": dict(lr=0.1, momentum=0.9, nesterov=True),
          "RMSprop": dict(lr=0.01, momentum=0.5, centered=True), "Adagrad": dict(lr=0.05)}[opt]
    kw.update(opt_kw)
    o = getattr(optim, opt)(model.parameters(), **kw)
    s = {"StepLR": lambda: optim.StepLR(o, step_size=2, gamma=0.5),
         "ExponentialLR": lambda: optim.ExponentialLR(o, gamma=0.9),
         "ReduceLROnPlateau": lambda: optim.ReduceLROnPlateau(o, patience=0, factor=0.5)}[sched]()
    return model, o, s


def train_step(model, opt, sched, rng):
    ids = rng.integers(1, V, size=(B, T + 1))
    ids[0, -3:] = 0  # some padding, ignored by the loss
    target = np.where(ids[:, 1:] == 0, -100, ids[:, 1:])
    logits = model(ids[:, :-1])
    loss, grad = losses.cross_entropy(logits, target)
    model.zero_grad()
    model.backward(grad)
    optim.clip_grad_norm(model.parameters(), 1.0)
    opt.step()
    sched.step(loss) if isinstance(sched, optim.ReduceLROnPlateau) else sched.step()
    return loss


def snapshot(model):
    return {n: (p.data.copy(), p.version) for n, p in model.named_parameters()}


def assert_unchanged(model, snap):
    now = snapshot(model)
    assert now.keys() == snap.keys()
    for n, (data, version) in snap.items():
        np.testing.assert_array_equal(now[n][0], data, err_msg=n)
        assert now[n][1] == version, f"{n} was assigned"


def assert_same_optimizer(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert (sa["type"], sa["hyper"], sa["step"]) == (sb["type"], sb["hyper"], sb["step"])
    for x, y in zip(sa["state"], sb["state"]):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


# round trips ------------------------------------------------------------------------------------
@pytest.mark.parametrize("opt, sched", [("Adam", "StepLR"), ("SGD", "ExponentialLR"),
                                        ("RMSprop", "ReduceLROnPlateau"), ("Adagrad", "StepLR")])
def test_round_trip_every_part(tmp_path, opt, sched):
    model, o, s = make(0, opt, sched)
    rng = np.random.default_rng(123)
    for _ in range(3):
        train_step(model, o, s, rng)
    extra = {"vocab": ["<pad>", "a", "b", "天", "😀"], "config": {"hidden": H, "layers": 2, "lr": 0.02},
             "note": None, "counts": np.arange(3)}
    path = tmp_path / "run.ckpt"
    ck.save_checkpoint(path, model, o, s, step=3, rng=rng, extra=extra)
    assert sorted(os.listdir(tmp_path)) == ["run.ckpt"]

    model2, o2, s2 = make(99, opt, sched, lr=0.5)  # different weights and hyperparameters
    rng2 = np.random.default_rng(0)
    got = ck.load_checkpoint(path, model2, o2, s2, rng=rng2)
    assert got.step == 3 and got.missing_keys == [] and got.unexpected_keys == [] and got.skipped == []
    assert got.extra["vocab"] == extra["vocab"] and got.extra["config"] == extra["config"]
    np.testing.assert_array_equal(got.extra["counts"], extra["counts"])
    assert got.metadata["optimizer"]["type"] == opt and got.metadata["model_type"] == "TinyLM"
    for (n, a), (m, b) in zip(model.named_parameters(), model2.named_parameters()):
        assert n == m
        np.testing.assert_array_equal(a.data, b.data, err_msg=n)
    assert_same_optimizer(o, o2)
    assert s2.state_dict() == s.state_dict() and o2.lr == o.lr
    assert rng2.random() == rng.random()
    # the model's own dropout generators continue where they were
    assert model2.drop.get_rng_state() == model.drop.get_rng_state()
    np.testing.assert_array_equal(model2.lstm._dropout_rng.random(5), model.lstm._dropout_rng.random(5))

    # reading without objects gives the arrays and states
    bare = ck.load_checkpoint(path)
    assert list(bare.model_state) == [n for n, _ in model.named_parameters()]
    assert bare.optimizer_state["type"] == opt and bare.scheduler_state["type"] == sched


def test_weights_only_and_plain_safetensors(tmp_path):
    model = TinyLM(1)
    p = tmp_path / "w.safetensors"
    ck.save_weights(p, model)
    other = TinyLM(2)
    ck.load_weights(p, other)
    for a, b in zip(model.parameters(), other.parameters()):
        np.testing.assert_array_equal(a.data, b.data)
    # a full checkpoint also serves weights; a weights file has no optimizer state
    full = tmp_path / "full.ckpt"
    m, o, s = make(3)
    ck.save_checkpoint(full, m, o, s, step=7)
    ck.load_weights(full, other)
    np.testing.assert_array_equal(other.head.weight.data, m.head.weight.data)
    with pytest.raises(KeyError, match="no optimizer state"):
        ck.load_checkpoint(p, TinyLM(2), optimizer=optim.SGD(TinyLM(2).parameters()))
    # a plain safetensors file keyed by parameter names (e.g. a PyTorch state dict) loads as weights
    plain = tmp_path / "plain.safetensors"
    plain.write_bytes(safetensors_numpy.save({k: v * 2 for k, v in model.state_dict().items()}))
    ck.load_weights(plain, other)
    np.testing.assert_array_equal(other.emb.weight.data, model.emb.weight.data * 2)
    with pytest.raises(ValueError, match="not an rnnfast checkpoint"):
        ck.load_checkpoint(plain, other)


def test_generator_kinds_with_array_state(tmp_path):
    model = nn.Linear(3, 2, seed=0)
    for bitgen in (np.random.MT19937, np.random.Philox, np.random.SFC64):
        rng = np.random.Generator(bitgen(5))
        rng.random(3)
        ck.save_checkpoint(tmp_path / "g.ckpt", model, rng=rng)
        again = np.random.Generator(bitgen(6))
        ck.load_checkpoint(tmp_path / "g.ckpt", model, rng=again)
        np.testing.assert_array_equal(again.random(4), rng.random(4))
    with pytest.raises(ValueError, match="'SFC64' state.*'PCG64'"):
        ck.load_checkpoint(tmp_path / "g.ckpt", model, rng=np.random.default_rng())


# exact resume -----------------------------------------------------------------------------------
@pytest.mark.parametrize("opt, sched", [("Adam", "StepLR"), ("SGD", "ReduceLROnPlateau")])
def test_resume_is_bitwise_exact(tmp_path, opt, sched):
    n = 6
    model, o, s = make(0, opt, sched)
    rng = np.random.default_rng(7)
    straight = [train_step(model, o, s, rng) for _ in range(n)]

    m1, o1, s1 = make(0, opt, sched)
    rng1 = np.random.default_rng(7)
    first = [train_step(m1, o1, s1, rng1) for _ in range(n // 2)]
    path = tmp_path / "half.ckpt"
    ck.save_checkpoint(path, m1, o1, s1, step=n // 2, rng=rng1, extra={"epoch": 0})
    train_step(m1, o1, s1, rng1)  # the process goes on after saving: the file must not care

    m2, o2, s2 = make(42, opt, sched, lr=0.3)  # fresh objects, deliberately different
    rng2 = np.random.default_rng(999)
    assert not np.array_equal(m2.head.weight.data, model.head.weight.data)
    got = ck.load_checkpoint(path, m2, o2, s2, rng=rng2)
    second = [train_step(m2, o2, s2, rng2) for _ in range(got.step, n)]

    assert first + second == straight  # losses bitwise equal, step by step
    for (name, a), (_, b) in zip(model.named_parameters(), m2.named_parameters()):
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)
    assert_same_optimizer(o, o2)
    assert s2.state_dict() == s.state_dict()


# atomic writes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["half_write", "fsync", "replace", "interrupt"])
def test_save_is_atomic_under_failure(tmp_path, monkeypatch, where):
    path = tmp_path / "model.ckpt"
    old_model, old_opt, old_sched = make(0)
    ck.save_checkpoint(path, old_model, old_opt, old_sched, step=1, extra={"v": "old"})
    before = path.read_bytes()
    new_model, new_opt, new_sched = make(5)

    def boom(*a, **k):
        raise OSError("simulated crash")

    if where == "half_write":
        fail_half_write(monkeypatch)
    elif where == "fsync":
        monkeypatch.setattr(atomic.os, "fsync", boom)
    elif where == "replace":
        monkeypatch.setattr(atomic.os, "replace", boom)
    else:  # Ctrl-C half-way through writing
        fail_half_write(monkeypatch, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt if where == "interrupt" else OSError):
        ck.save_checkpoint(path, new_model, new_opt, new_sched, step=2, extra={"v": "new"})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.ckpt"]  # no temp file left behind
    probe = TinyLM(9)
    assert ck.load_checkpoint(path, probe).extra == {"v": "old"}
    np.testing.assert_array_equal(probe.head.weight.data, old_model.head.weight.data)


def test_atomic_helper(tmp_path):
    p = tmp_path / "f.txt"
    atomic.atomic_write(p, "héllo\n")
    assert p.read_bytes() == "héllo\n".encode("utf-8")
    mask = os.umask(0o022)
    os.umask(mask)
    assert os.stat(p).st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600
    os.chmod(p, 0o640)
    with atomic.atomic_open(p, "w") as f:
        f.write("a\nb")
    assert p.read_bytes() == b"a\nb" and os.stat(p).st_mode & 0o777 == 0o640  # keeps the old mode
    with pytest.raises(RuntimeError):
        with atomic.atomic_open(p, "wb") as f:
            f.write(b"partial")
            raise RuntimeError("body failed")
    assert p.read_bytes() == b"a\nb" and sorted(os.listdir(tmp_path)) == ["f.txt"]
    with pytest.raises(TypeError, match="data"):
        atomic.atomic_write(p, 3)
    with pytest.raises(ValueError, match="mode"):
        with atomic.atomic_open(p, "a"):
            pass


# corrupt and mismatched files -------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    model, o, s = make(0)
    train_step(model, o, s, np.random.default_rng(0))
    path = tmp_path / "good.ckpt"
    ck.save_checkpoint(path, model, o, s, step=1, rng=np.random.default_rng(1), extra={"k": 1})
    return path


def _targets():
    model, o, s = make(77)
    return model, o, s, snapshot(model), o.state_dict(), s.state_dict()


def _assert_targets_unchanged(model, o, s, snap, osd, ssd):
    assert_unchanged(model, snap)
    assert s.state_dict() == ssd
    fresh = make(0)[1]
    fresh.load_state_dict(osd)
    assert_same_optimizer(o, fresh)


def test_truncated_file(saved, tmp_path):
    raw = saved.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    bad = tmp_path / "bad.ckpt"
    for cut in (0, 5, 8, 8 + n // 2, 8 + n, len(raw) // 2 + n // 2, len(raw) - 1):
        bad.write_bytes(raw[:cut])
        targets = _targets()
        with pytest.raises(ValueError, match="truncated|corrupt|not a checkpoint"):
            ck.load_checkpoint(bad, *targets[:3])
        _assert_targets_unchanged(*targets)


def test_flipped_bytes(saved, tmp_path):
    raw = saved.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    rng = np.random.default_rng(3)
    bad = tmp_path / "bad.ckpt"
    targets = _targets()
    # every kind of header byte: length field, JSON syntax, tensor entries, metadata; plus the data
    positions = list(range(8)) + sorted(rng.choice(np.arange(8, 8 + n), 120, replace=False)) + \
        sorted(rng.choice(np.arange(8 + n, len(raw)), 30, replace=False))
    for i in positions:
        for mask in (0x01, 0xFF):
            b = bytearray(raw)
            b[i] ^= mask
            bad.write_bytes(bytes(b))
            with pytest.raises((ValueError, KeyError)) as info:
                ck.load_checkpoint(bad, *targets[:3])
            assert str(bad) in str(info.value), f"byte {i}: {info.value}"
    _assert_targets_unchanged(*targets)
    b = bytearray(raw)
    b[-1] ^= 0x10  # the last data byte: found by the per-array checksum, which names the array
    bad.write_bytes(bytes(b))
    with pytest.raises(ValueError, match=r"array '.*' fails its checksum"):
        ck.load_checkpoint(bad)


def test_missing_and_unexpected_keys(tmp_path):
    full = nn.Sequential(nn.Linear(3, 4, seed=0), nn.Linear(4, 2, seed=1))
    path = tmp_path / "seq.ckpt"
    ck.save_checkpoint(path, full)
    bigger = nn.Sequential(nn.Linear(3, 4, seed=5), nn.Linear(4, 2, seed=6), nn.Linear(2, 2, seed=7))
    snap = snapshot(bigger)
    with pytest.raises(KeyError, match=r"missing keys \['2.weight', '2.bias'\], unexpected keys \[\]"):
        ck.load_checkpoint(path, bigger)
    assert_unchanged(bigger, snap)
    smaller = nn.Sequential(nn.Linear(3, 4, seed=5))
    with pytest.raises(KeyError, match=r"unexpected keys \['1.weight', '1.bias'\]"):
        ck.load_weights(path, smaller)
    got = ck.load_weights(path, smaller, strict=False)
    assert got.unexpected_keys == ["1.weight", "1.bias"] and got.missing_keys == []
    np.testing.assert_array_equal(smaller[0].weight.data, full[0].weight.data)
    # a model without biases: missing in the file's eyes are none, unexpected are the biases
    m, o, s = make(0)
    ck.save_checkpoint(path, m, o, s)
    nobias = TinyLM(1, bias=False)
    snap = snapshot(nobias)
    with pytest.raises(KeyError, match="bias_ih_l0"):
        ck.load_checkpoint(path, nobias)
    assert_unchanged(nobias, snap)


def test_wrong_shape_names_key_and_shapes(saved):
    model = TinyLM(0, hidden=H + 1)
    opt = optim.Adam(model.parameters())
    snap, osd = snapshot(model), opt.state_dict()
    with pytest.raises(ValueError, match=rf"lstm.weight_ih_l0: the checkpoint has shape \({4 * H}, {E}\), "
                                         rf"the model expects \({4 * (H + 1)}, {E}\)"):
        ck.load_checkpoint(saved, model, opt)
    assert_unchanged(model, snap)
    assert opt.step_count == osd["step"] == 0


def test_wrong_version_and_format(saved, tmp_path):
    arrays = safetensors_numpy.load(saved.read_bytes())
    raw = saved.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    meta = json.loads(raw[8:8 + n])["__metadata__"]
    bad = tmp_path / "v2.ckpt"
    targets = _targets()
    for change, message in ((dict(format_version="2"), "format version 2.*reads version 1.*newer"),
                            (dict(format_version="0"), "format version 0"),
                            (dict(format_version="x"), "format_version is 'x'"),
                            (dict(format="something.else"), "not an rnnfast checkpoint: format is 'something.else'"),
                            (dict(content="{}"), "metadata fails its checksum")):
        bad.write_bytes(safetensors_numpy.save(arrays, metadata={**meta, **change}))
        with pytest.raises(ValueError, match=message):
            ck.load_checkpoint(bad, *targets[:3])
    _assert_targets_unchanged(*targets)
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="corrupt"):
        ck.load_checkpoint(bad)
    with pytest.raises(FileNotFoundError):
        ck.load_checkpoint(tmp_path / "absent.ckpt")


def test_optimizer_and_scheduler_mismatches(saved):
    model = TinyLM(5)
    snap = snapshot(model)
    with pytest.raises(ValueError, match="optimizer type mismatch: the checkpoint has 'Adam' state, got a SGD"):
        ck.load_checkpoint(saved, model, optim.SGD(model.parameters(), lr=0.1))
    n = len(model.parameters())
    with pytest.raises(ValueError, match=f"optimizer has {n} parameters, the optimizer given has 2"):
        ck.load_checkpoint(saved, model, optim.Adam([model.head.weight, model.head.bias], amsgrad=True))
    params = model.parameters()
    shuffled = optim.Adam(params[::-1], amsgrad=True)
    with pytest.raises(ValueError, match="different order"):
        ck.load_checkpoint(saved, model, shuffled)
    o = optim.Adam(model.parameters(), amsgrad=True)
    with pytest.raises(ValueError, match="scheduler type mismatch: the checkpoint has 'StepLR'"):
        ck.load_checkpoint(saved, model, o, optim.ExponentialLR(o, 0.5))
    assert_unchanged(model, snap)
    assert o.step_count == 0


def _rewrite_content(src, dst, change):
    """Copy a checkpoint with its JSON content edited and re-checksummed (a buggy or foreign writer)."""
    raw = src.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    meta = json.loads(raw[8:8 + n])["__metadata__"]
    content = json.loads(meta["content"])
    change(content)
    text = json.dumps(content)
    meta.update(content=text, content_crc32=f"{__import__('zlib').crc32(text.encode()):08x}")
    dst.write_bytes(safetensors_numpy.save(safetensors_numpy.load(raw), metadata=meta))


@pytest.mark.parametrize("part, change, message", [
    ("optimizer", lambda c: c["optimizer"]["hyper"].update(lr=-1.0), "invalid optimizer state: .*lr"),
    ("optimizer", lambda c: c["optimizer"]["hyper"].pop("eps"), "invalid optimizer state: .*eps"),
    ("scheduler", lambda c: c["scheduler"].pop("gamma"), "invalid scheduler state: .*gamma"),
    ("rng", lambda c: c["rng"]["state"].update(state="x"), "rng: invalid generator state"),
    ("rng", lambda c: c["module_rngs"]["drop"].update(bit_generator="MT19937"), "module 'drop'.*'MT19937'"),
    ("step", lambda c: c.update(step=-3), "step is -3"),
    ("optimizer", lambda c: c["optimizer"].pop("state_keys"), "optimizer section is incomplete"),
])
def test_invalid_states_inside_a_valid_file(saved, tmp_path, part, change, message):
    bad = tmp_path / "edited.ckpt"
    _rewrite_content(saved, bad, change)
    targets = _targets()
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    with pytest.raises(ValueError, match=message):
        ck.load_checkpoint(bad, *targets[:3], rng=rng)
    _assert_targets_unchanged(*targets)
    assert rng.bit_generator.state == state


def test_absent_parts_strict_and_not(tmp_path):
    model = TinyLM(0)
    path = tmp_path / "w.ckpt"
    ck.save_weights(path, model)
    target, o, s = make(1)
    snap = snapshot(target)
    for kw in (dict(optimizer=o), dict(scheduler=s), dict(rng=np.random.default_rng())):
        with pytest.raises(KeyError, match=f"no {list(kw)[0]} state"):
            ck.load_checkpoint(path, target, **kw)
        assert_unchanged(target, snap)
    got = ck.load_checkpoint(path, target, o, s, rng=np.random.default_rng(), strict=False)
    assert got.skipped == ["optimizer", "scheduler", "rng"]
    np.testing.assert_array_equal(target.head.weight.data, model.head.weight.data)
    # the model's dropout generators must match the file's under strict
    no_dropout = nn.Sequential(nn.Linear(3, 3, seed=0))
    ck.save_weights(path, no_dropout)
    with_dropout = nn.Sequential(nn.Linear(3, 3, seed=1), nn.Dropout(0.5, seed=0))
    with pytest.raises(KeyError, match=r"random generators.*missing \['1'\]"):
        ck.load_checkpoint(path, with_dropout)
    ck.load_checkpoint(path, with_dropout, strict=False)


def test_failure_while_applying_rolls_back(saved):
    class FlakyStepLR(optim.StepLR):
        calls = 0

        def load_state_dict(self, sd):
            FlakyStepLR.calls += 1
            if FlakyStepLR.calls == 2:  # the first call is the dry run on a copy
                raise RuntimeError("disk on fire")
            super().load_state_dict(sd)

    FlakyStepLR.__name__ = "StepLR"
    model, o, _ = make(8)
    s = FlakyStepLR(o, step_size=2)
    rng = np.random.default_rng(4)
    snap, osd, rstate = snapshot(model), o.state_dict(), rng.bit_generator.state
    with pytest.raises(RuntimeError, match="disk on fire"):
        ck.load_checkpoint(saved, model, o, s, rng=rng)
    for n, p in model.named_parameters():
        np.testing.assert_array_equal(p.data, snap[n][0])
    fresh = make(0)[1]
    fresh.load_state_dict(osd)
    assert_same_optimizer(o, fresh)
    assert rng.bit_generator.state == rstate


def test_bad_arguments(tmp_path):
    model = nn.Linear(2, 2, seed=0)
    p = tmp_path / "x.ckpt"
    with pytest.raises(TypeError, match="extra: not JSON-serialisable"):
        ck.save_checkpoint(p, model, extra={"f": object()})
    with pytest.raises(TypeError, match="rng: expected a numpy.random.Generator, got RandomState"):
        ck.save_checkpoint(p, model, rng=np.random.RandomState(0))
    with pytest.raises(ValueError, match="step: expected an int >= 0, got -1"):
        ck.save_checkpoint(p, model, step=-1)
    with pytest.raises(TypeError, match="model: expected an rnnfast.nn.Module, got dict"):
        ck.save_checkpoint(p, {"w": np.zeros(2)})
    assert not p.exists()


def test_missing_safetensors_is_a_clear_import_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(ImportError, match="pip install safetensors"):
        ck.save_weights(tmp_path / "x.ckpt", nn.Linear(2, 2, seed=0))


def test_import_is_lazy():
    code = ("import sys, rnnfast.checkpoint, rnnfast.interop; "
            "print(sorted(m for m in ('torch', 'safetensors') if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=str(Path(ck.__file__).resolve().parents[1]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
