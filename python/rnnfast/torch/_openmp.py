"""Long kernel calls on torch's own OpenMP threads instead of rnnfast's team.

After each parallel torch op, torch's OpenMP pool threads spin for milliseconds (libgomp's
default wait policy: ~8 ms of CPU measured after one op) on the cores rnnfast's workers need,
so a kernel that starts right after a torch op (every drop-in forward and backward does) ran up
to ~1.6x slower. Run on those spinning threads, it is as fast as alone. The kernels reach the
runtime through its GOMP_parallel entry point (the ABI GCC emits for ``#pragma omp parallel``;
LLVM's and Intel's runtimes provide it too); csrc/core/team.h says which calls go there.
"""
from __future__ import annotations

import ctypes
import os

import torch

from .. import _core

_RUNTIMES = ("libgomp", "libiomp5", "libomp")


def _loaded_runtime() -> str | None:
    """The path of the OpenMP runtime loaded in this process, preferring the one inside torch."""
    try:
        with open("/proc/self/maps") as maps:
            fields = (line.split(None, 5) for line in maps)
            paths = {f[5].strip() for f in fields if len(f) == 6}
    except OSError:  # not Linux
        return None
    found = [p for p in paths if os.path.basename(p).startswith(_RUNTIMES) and ".so" in p]
    torch_dir = os.path.dirname(torch.__file__)
    found.sort(key=lambda p: (not p.startswith(torch_dir), p))
    return found[0] if found else None


def share_torch_threads(enable: bool = True) -> bool:
    """Run rnnfast's long kernel calls on torch's OpenMP threads (True, the default once
    rnnfast.torch is imported) or on rnnfast's own team (False). Returns whether torch's are used:
    False when torch's parallel backend is not OpenMP or its runtime cannot be found. Calls that
    need more threads than torch uses (``torch.set_num_threads``) stay on rnnfast's team."""
    if not enable:
        _core._set_host_openmp(0, 0, 0, 0)
        return False
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return False
    path = _loaded_runtime()
    if path is None:
        return False
    try:
        lib = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0))
        entries = lib.GOMP_parallel, lib.omp_get_thread_num, lib.omp_get_num_threads, lib.omp_get_max_threads
    except (OSError, AttributeError):
        return False
    address = lambda f: ctypes.cast(f, ctypes.c_void_p).value  # noqa: E731
    _core._set_host_openmp(*map(address, entries))
    return True
