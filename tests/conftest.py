"""Shared test helpers: PyTorch is an oracle only; in CI (RNNFAST_REQUIRE_TORCH=1) it must be there.
Likewise MPI (mpi4py and mpiexec) for the multi-rank tests, required in CI by RNNFAST_REQUIRE_MPI=1."""
import os
import shutil
import sys

import pytest


def require_torch():
    """Import torch, or skip the test; with RNNFAST_REQUIRE_TORCH=1 a missing torch fails instead."""
    try:
        import torch
    except ImportError:
        if os.environ.get("RNNFAST_REQUIRE_TORCH") == "1":
            pytest.fail("torch is required (RNNFAST_REQUIRE_TORCH=1) but is not installed")
        pytest.skip("torch not installed")
    torch.set_num_threads(1)
    return torch


@pytest.fixture
def torch():
    return require_torch()


def require_mpiexec():
    """The path of ``mpiexec`` when mpi4py is installed too, or skip; with RNNFAST_REQUIRE_MPI=1 fail instead.
    (mpi4py is not imported here: MPI starts only inside the ranks the tests launch.)"""
    import importlib.util
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
    missing = [name for name, ok in (("mpi4py", importlib.util.find_spec("mpi4py") is not None),
                                     ("mpiexec", mpiexec is not None)) if not ok]
    if missing:
        if os.environ.get("RNNFAST_REQUIRE_MPI") == "1":
            pytest.fail(f"MPI is required (RNNFAST_REQUIRE_MPI=1) but {' and '.join(missing)} is missing "
                        "(pip install mpi4py mpich)")
        pytest.skip(f"MPI not installed ({' and '.join(missing)} missing; pip install mpi4py mpich)")
    return mpiexec


@pytest.fixture
def mpiexec():
    return require_mpiexec()
