"""The package is typed: py.typed ships, and _core.pyi declares exactly what the bindings define, with the
bindings' own parameter names (so a binding added, removed or renamed without its stub fails here)."""
import ast
import inspect
import pathlib
import re

import rnnfast
from rnnfast import _core

PKG = pathlib.Path(rnnfast.__file__).parent
STUB = ast.parse((PKG / "_core.pyi").read_text(encoding="utf-8"))
HELPER_TYPES = {"CpuInfo", "ReferenceGrads", "_PeepholeGrad"}  # TypedDicts of the stub, not bindings


def _stub_defs(body):
    return {n.name: n for n in body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


def _runtime_params(obj):
    """Parameter names from pybind11's signature line, e.g. 'f(a: int, b: str = ...) -> None'."""
    first = (obj.__doc__ or "").splitlines()[0]
    inner = first[first.index("(") + 1: first.rindex(")")]
    names = [m.group(1) for m in re.finditer(r"(?:^|,\s*)(\w+)\s*:", inner)]
    return [n for n in names if n != "self"]


def _stub_params(fn):
    a = fn.args
    return [p.arg for p in a.posonlyargs + a.args if p.arg != "self"], len(a.posonlyargs)


def _check_function(name, obj, fn):
    runtime = _runtime_params(obj)
    stub, n_posonly = _stub_params(fn)
    assert len(stub) == len(runtime), f"{name}: the stub has {stub}, the binding {runtime}"
    for i, (s, r) in enumerate(zip(stub, runtime)):
        if re.fullmatch(r"arg\d+", r):  # pybind11 gave no name: positional-only in the stub
            assert i < n_posonly, f"{name}: {s} must be positional-only (the binding has no keyword names)"
        else:
            assert s == r, f"{name}: parameter {i} is {r!r} in the binding, {s!r} in the stub"


def test_py_typed_ships():
    assert (PKG / "py.typed").is_file()


def test_stub_matches_the_bindings():
    stub = _stub_defs(STUB.body)
    runtime = {n for n in dir(_core) if not n.startswith("_")}
    assert set(stub) - HELPER_TYPES == runtime
    for name in sorted(runtime):
        obj = getattr(_core, name)
        if not inspect.isclass(obj):
            _check_function(name, obj, stub[name])
            continue
        members = _stub_defs(stub[name].body)
        public = {m for m in vars(obj) if not m.startswith("_")} | {"__init__"}
        assert set(members) == public, f"{name}: stub {sorted(members)}, binding {sorted(public)}"
        for m in sorted(public):
            attr = inspect.getattr_static(obj, m)
            decorated = any(getattr(d, "id", None) == "property" for d in members[m].decorator_list)
            assert decorated == isinstance(attr, property), f"{name}.{m}: property in one, method in the other"
            if not decorated:
                _check_function(f"{name}.{m}", getattr(obj, m), members[m])


def test_submodules_are_attributes_loaded_on_first_use():
    import subprocess
    import sys
    code = ("import sys, rnnfast; before = sorted(m for m in sys.modules if m.startswith('rnnfast.'));"
            "f = (rnnfast.optim.Adam, rnnfast.losses.cross_entropy, rnnfast.checkpoint.save_checkpoint, rnnfast.nn.LSTM,"
            " rnnfast.text.Vocab, rnnfast.data.LMStream, rnnfast.metrics, rnnfast.train.Trainer, rnnfast.interop,"
            " rnnfast.models.Seq2Seq, rnnfast.no_grad); assert 'optim' in dir(rnnfast); print(before)")
    env = dict(__import__("os").environ, PYTHONPATH=str(PKG.parent))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['rnnfast._core']"  # `import rnnfast` alone loads only the kernels
    try:
        rnnfast.no_such_thing
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("rnnfast.no_such_thing did not raise AttributeError")
