"""Shared test helpers: PyTorch is an oracle only; in CI (RNNFAST_REQUIRE_TORCH=1) it must be there."""
import os

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
