#!/usr/bin/env bash
# Developer build: compiles the extension into build/dev and drops it into python/rnnfast/,
# so that `PYTHONPATH=python pytest` runs against the working tree without reinstalling.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build/dev -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" "$@" >/dev/null
cmake --build build/dev
so=$(ls build/dev/_core*.so)
cp "$so" "python/rnnfast/.$(basename "$so").tmp"
mv "python/rnnfast/.$(basename "$so").tmp" "python/rnnfast/$(basename "$so")"
