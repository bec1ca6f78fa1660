#!/usr/bin/env bash
# Configure and build meddiff (Release, Ninja, ccache) into ./build. Extra arguments go to CMake,
# e.g. scripts/build.sh -DMEDDIFF_CUDA=OFF. Set MEDDIFF_BUILD_DIR to build elsewhere.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/scripts/env.sh"
build=${MEDDIFF_BUILD_DIR:-$root/build}
jobs=${MEDDIFF_JOBS:-$(nproc)}
if [[ ! -f "$build/build.ninja" || $# -gt 0 ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
fi
start=$(date +%s)
cmake --build "$build" -j "$jobs"
echo "build: done in $(( $(date +%s) - start )) s ($build)"
