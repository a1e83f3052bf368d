"""Packed weights of 1 MiB or more go on transparent huge pages on Linux (csrc/core/layer.h,
AlignedBuffer): the same bits as on 4 KiB pages; smaller ones stay on 4 KiB pages."""
import pathlib
import sys

import numpy as np
import pytest

import rnnfast
from rnnfast import _core

THP = pathlib.Path("/sys/kernel/mm/transparent_hugepage/enabled")


def anon_huge_kib():
    for line in pathlib.Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    raise AssertionError("no AnonHugePages line in /proc/self/smaps_rollup")


def packed_model(H, huge):
    previous = _core._huge_pages(huge)
    try:
        m = rnnfast.nn.LSTM(H, H, seed=1).eval()
        x = np.random.default_rng(2).standard_normal((5, 1, H), dtype=np.float32)
        return m, m(x)[0], x  # the first call packs the weights under this setting
    finally:
        _core._huge_pages(previous)


@pytest.mark.skipif(not sys.platform.startswith("linux") or not THP.exists() or "[never]" in THP.read_text(),
                    reason="needs Linux with transparent huge pages (madvise or always)")
def test_large_packed_weights_use_huge_pages_with_the_same_bits():
    only_madvised = "[madvise]" in THP.read_text()  # with "always", other memory may get huge pages too
    before = anon_huge_kib()
    small, _, _ = packed_model(64, True)  # 64 KiB of W_hh: stays on 4 KiB pages
    off, y_off, x = packed_model(256, False)  # W_ih, W_hh 1 MiB each
    if only_madvised:
        assert anon_huge_kib() == before
    before = anon_huge_kib()
    on, y_on, _ = packed_model(256, True)
    assert anon_huge_kib() >= before + 2 * 2048
    np.testing.assert_array_equal(y_on, y_off)
    np.testing.assert_array_equal(on(x)[0], off(x)[0])


def test_the_huge_pages_hook_takes_only_a_bool():
    with pytest.raises(TypeError, match="on"):
        _core._huge_pages(1)
    assert _core._huge_pages(True) is True
