"""The drop-in engine: PyTorch's cases (peer_torch) with their torch.nn module swapped by
rnnfast.torch.patch, so autograd, the module call and the weights are exactly the torch peer's
and only the kernels differ. Raises ImportError when torch is missing."""
from __future__ import annotations

from . import peer_torch
from .configs import Spec, check_default_cell


def _patched(case):
    import rnnfast.torch

    rnnfast.torch.patch(case.module)
    case.engine = "rnnfast.torch"
    return case


def make_case(cell: str, spec: Spec, weights, data: dict, threads: int):
    """The case of peer_torch.make_case with rnnfast's kernels; streams (torch cells) included."""
    check_default_cell(cell, "rnnfast.torch")
    import rnnfast

    rnnfast.set_num_threads(threads)
    return _patched(peer_torch.make_case(cell, spec, weights, data, threads))
