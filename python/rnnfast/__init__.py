"""rnnfast: fast CPU recurrent networks (RNN, LSTM, GRU) with C++ kernels under a numpy API."""
import os as _os
import warnings as _warnings

from . import _core
from ._core import get_idle_spin, get_num_threads, get_prewake, set_idle_spin, set_num_threads, set_prewake

__version__ = "0.1.0"

_requested = _os.environ.get("RNNFAST_ISA")
if _requested and _requested != _core.get_isa():
    _warnings.warn(f"RNNFAST_ISA={_requested!r} ignored: this CPU runs {_core.cpu_info()['isas_available']}; "
                   f"using {_core.get_isa()!r}", RuntimeWarning, stacklevel=2)


def cpu_info() -> dict:
    """The instruction set in use, the ones this CPU can run, the thread count, and the kernel thread
    team's measured costs (``team``: a phase hand-off in ns, a sleeping worker's wake-up and the spin
    time before sleeping in µs; measured on first use)."""
    return dict(_core.cpu_info())


def set_isa(name: str) -> None:
    """Force the kernels of one instruction set ('generic', 'avx2', 'avx512'), e.g. for tests."""
    _core.set_isa(name)


# Submodules load on first use (PEP 562), so `import rnnfast` stays cheap and `rnnfast.optim` works
# without its own import.
_SUBMODULES = ("bench", "charlm", "checkpoint", "cli", "ctc", "data", "deploy", "distributed", "experiments",
               "interop", "losses", "metrics", "models", "nn", "onnx", "optim", "text", "train")
# names re-exported from a submodule, loaded with it: name -> (submodule, its attribute)
_FROM_SUBMODULES = {"no_grad": ("nn", "no_grad"), "export": ("deploy", "export"), "load_export": ("deploy", "load")}


def __getattr__(name: str):
    if name in _SUBMODULES:
        import importlib
        return importlib.import_module(f"{__name__}.{name}")  # also binds it here: later lookups are direct
    if name in _FROM_SUBMODULES:
        module, attr = _FROM_SUBMODULES[name]
        value = getattr(__getattr__(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES) | set(_FROM_SUBMODULES))


__all__ = ["cpu_info", "set_isa", "get_num_threads", "set_num_threads", "get_idle_spin", "set_idle_spin",
           "get_prewake", "set_prewake", "nn",
           "no_grad", "export", "load_export", "onnx"]
