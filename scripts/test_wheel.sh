#!/usr/bin/env bash
# Installs a built wheel into a clean venv and uses it away from the source tree: the kernels on
# every instruction set this CPU runs (against a numpy LSTM), the bundled libraries, the command.
#
#   scripts/test_wheel.sh [WHEEL]     # default: the manylinux wheel in dist/
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
wheel="${1:-$(ls "$root"/dist/rnnfast-*manylinux*.whl)}"
case "$(basename "$wheel")" in
  *-manylinux*.whl) ;;
  *) echo "test_wheel: $wheel is not a manylinux wheel (run scripts/build_wheel.sh)" >&2; exit 1 ;;
esac

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet "$wheel"   # its dependencies come from the registry
cd "$work"   # nothing of the source tree is importable from here

"$work/venv/bin/python" - "$work/venv" <<'PY'
import os, sys
import numpy as np
import rnnfast

venv = os.path.realpath(sys.argv[1])
assert os.path.realpath(rnnfast.__file__).startswith(venv), f"rnnfast imported from {rnnfast.__file__}"
for typed in ("py.typed", "_core.pyi"):
    assert os.path.isfile(os.path.join(os.path.dirname(rnnfast.__file__), typed)), f"{typed} is not in the wheel"
with open("/proc/self/maps") as f:
    libs = {line.split()[-1] for line in f if ".so" in line}
for lib in libs:
    if os.path.basename(lib).startswith("libgomp"):
        assert "rnnfast.libs" in lib, f"libgomp loaded from {lib}, not the copy bundled in the wheel"


def lstm_reference(x, sd):
    """A plain numpy LSTM (PyTorch's equations, gate order i, f, g, o): outputs (T, B, H)."""
    w_ih, w_hh, b = sd["weight_ih_l0"], sd["weight_hh_l0"], sd["bias_ih_l0"] + sd["bias_hh_l0"]
    H = w_hh.shape[1]
    h = np.zeros((x.shape[1], H)); c = np.zeros((x.shape[1], H)); out = []
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))
    for x_t in x:
        i, f, g, o = np.split(x_t @ w_ih.T + h @ w_hh.T + b, 4, axis=1)
        c = sig(f) * c + sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(c)
        out.append(h)
    return np.stack(out)


x = np.random.default_rng(0).standard_normal((9, 3, 5)).astype(np.float32)
for isa in rnnfast.cpu_info()["isas_available"]:
    rnnfast.set_isa(isa)
    lstm = rnnfast.nn.LSTM(5, 19)
    y, _ = lstm(x)
    ref = lstm_reference(x.astype(np.float64), {k: v.astype(np.float64) for k, v in lstm.state_dict().items()})
    err = float(np.abs(y - ref).max())
    assert err < 1e-4, f"{isa}: max difference {err} from the numpy LSTM"
    grad_x = lstm.backward(np.ones_like(y))
    assert grad_x.shape == x.shape and np.isfinite(grad_x).all()
    print(f"wheel: {isa} LSTM forward matches numpy (max difference {err:.1e}); backward finite")
PY

python3 -c "print(''.join(f'def f{i}(x):\n    return x * {i}\n\n' for i in range(300)))" > corpus.txt
"$work/venv/bin/rnnfast" charlm train corpus.txt --layers 1 --hidden 32 --steps 20 --eval-interval 10 \
  --sample-len 20 --log-interval 10
"$work/venv/bin/rnnfast" charlm eval charlm_checkpoints/best.ckpt corpus.txt
echo "wheel OK: $(basename "$wheel") installs into a clean venv and runs"
