#!/bin/sh
# Builds the extension exactly as a non-x86 machine would (cmake -DRNNFAST_NO_X86=ON: generic
# kernels only, no AVX translation units, no cpuid/xgetbv), checks that the binary holds no cpuid
# and no AVX register, and runs a smoke test of it against the scalar reference.
# Usage: scripts/no_x86_smoke.sh [build-dir]   (needs cmake, ninja or make, pybind11, numpy)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-"$root/build/no-x86"}
python=${PYTHON:-python}
cmake -S "$root" -B "$build" -DRNNFAST_NO_X86=ON -DCMAKE_BUILD_TYPE=Release \
  -DPython_EXECUTABLE="$(command -v "$python")" -Dpybind11_DIR="$("$python" -m pybind11 --cmakedir)" >/dev/null
cmake --build "$build" >/dev/null
so=$(ls "$build"/_core*.so)
if command -v objdump >/dev/null; then
  if objdump -d "$so" | grep -E -q '\bcpuid\b|xgetbv|%ymm|%zmm'; then
    echo "no-x86 build: found cpuid, xgetbv or AVX registers in $so" >&2
    exit 1
  fi
fi
pkg=$(mktemp -d)
trap 'rm -rf "$pkg"' EXIT
cp -r "$root/python/rnnfast" "$pkg/"
cp "$so" "$pkg/rnnfast/"
cd "$pkg"
PYTHONPATH="$pkg" "$python" - <<'PY'
import numpy as np
import rnnfast
from rnnfast import _core

info = rnnfast.cpu_info()
assert info["isas_available"] == ["generic"] and info["isa"] == "generic", info
rng = np.random.default_rng(0)
T, B, I, H = 6, 3, 5, 17
x = rng.standard_normal((T, B, I)).astype(np.float32)
w_ih = (0.3 * rng.standard_normal((4 * H, I))).astype(np.float32)
w_hh = (0.3 * rng.standard_normal((4 * H, H))).astype(np.float32)
b = np.zeros(4 * H, np.float32)
lengths = np.array([6, 2, 4], np.int32)
packed = _core.PackedWeights("lstm", w_ih, w_hh, b, b, False)
y = np.zeros((T, B, H), np.float32)
hn, cn = np.zeros((B, H), np.float32), np.zeros((B, H), np.float32)
for threads in (1, 2):
    rnnfast.set_num_threads(threads)
    _core.layer_forward(packed, x, lengths, False, None, None, y, 0, hn, cn, None)
    ref_y, ref_h, _ = _core.reference_forward("lstm", x, lengths, False, w_ih, w_hh, b, b, None, None)
    np.testing.assert_allclose(y, ref_y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hn, ref_h, rtol=1e-5, atol=1e-6)
print("no-x86 build: generic kernels only, matches the reference:", info["cache_bytes"])
PY
