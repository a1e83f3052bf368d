"""The examples in the public docstrings run and print what they say; the public classes and functions
of the toolkit modules carry numpydoc docstrings whose Parameters section names exactly the
signature's parameters, with Returns where something is returned."""
import ast
import dataclasses
import doctest
import importlib
import inspect
import re
import textwrap

import pytest

import rnnfast.nn.recurrent

MODULES = ["losses", "ctc", "optim", "checkpoint", "text", "data", "metrics", "train", "interop", "distributed"]


def _public(module):
    for name in module.__all__:
        obj = getattr(module, name)
        if getattr(obj, "__module__", None) != module.__name__:
            continue
        yield name, obj
        if inspect.isclass(obj):
            for attr, value in vars(obj).items():
                if not attr.startswith("_") and inspect.isfunction(getattr(value, "__func__", value)):
                    yield f"{name}.{attr}", getattr(value, "__func__", value)


def _section(doc, title):
    """The lines of a numpydoc section (None when absent)."""
    m = re.search(rf"^{title}\n-{{{len(title)}}}\n(.*?)(?=^\S[^\n]*\n-{{3,}}\n|\Z)", doc, re.S | re.M)
    return None if m is None else m.group(1)


def _documented_names(section):
    names = []
    for line in section.splitlines():
        if line and not line.startswith(" "):
            head = line.split(" : ")[0]
            names += [n.strip().lstrip("*") for n in head.split(",")]
    return names


def _signature_names(fn):
    return [p.name for p in inspect.signature(fn).parameters.values() if p.name not in ("self", "cls")]


def _returns_value(fn):
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError):
        return False
    top = tree.body[0]
    nested = {id(n) for f in ast.walk(top) if f is not top and isinstance(f, (ast.FunctionDef, ast.Lambda))
              for n in ast.walk(f)}
    return any(isinstance(n, ast.Return) and n.value is not None and id(n) not in nested for n in ast.walk(top))


@pytest.mark.parametrize("module", [rnnfast.nn.recurrent])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


CASES = [(f"{m}.{name}", obj) for m in MODULES for name, obj in _public(importlib.import_module(f"rnnfast.{m}"))]


@pytest.mark.parametrize("name, obj", CASES, ids=[c[0] for c in CASES])
def test_numpydoc(name, obj):
    doc = inspect.getdoc(obj)
    assert doc, f"{name}: no docstring"
    fn = obj.__init__ if inspect.isclass(obj) else obj
    params = [] if inspect.isclass(obj) and fn is object.__init__ else _signature_names(fn)
    section = _section(doc, "Attributes" if dataclasses.is_dataclass(obj) else "Parameters")
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        params = []  # exceptions document their attributes
    if params:
        assert section is not None, f"{name}: no Parameters section for {params}"
        assert _documented_names(section) == params, f"{name}: documents {_documented_names(section)}, takes {params}"
    if not inspect.isclass(obj) and _returns_value(obj):
        assert _section(doc, "Returns") is not None, f"{name}: returns a value but has no Returns section"


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module):
    mod = importlib.import_module(f"rnnfast.{module}")
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
