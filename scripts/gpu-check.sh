#!/usr/bin/env bash
# The one call for a GPU machine: builds the LibTorch-only targets (MEDDIFF_WITH_ITK=OFF) against the
# machine's PyTorch and nvcc, runs the GPU tests (ctest -L gpu), then meddiff-gpu-check: stage 1 and
# stage 2 training and sampling on CUDA against the CPU, and three real training steps of every
# shipped config at its size. Results (JSON and text) go to OUTDIR. Needs ./.gpu-deps (made on a
# Debian machine by scripts/gpu-deps.sh) for the fmt, nlohmann-json and doctest headers.
#   scripts/gpu-check.sh OUTDIR
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:?usage: scripts/gpu-check.sh OUTDIR}
mkdir -p "$out"
log() { echo "gpu-check: $*" | tee -a "$out/gpu-check.log"; }
t0=$(date +%s)
deps=$root/.gpu-deps
[[ -d $deps/usr/include ]] || { log "no $deps (run scripts/gpu-deps.sh on a Debian machine first)"; exit 1; }
py=${PYTHON:-python3}
torch_prefix=$($py -c 'import torch;print(torch.utils.cmake_prefix_path)') || { log "no PyTorch in $py"; exit 1; }
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.')
nvidia-smi --query-gpu=name,memory.total,compute_cap --format=csv,noheader > "$out/gpu.txt" 2>&1 || true
log "GPU: $(cat "$out/gpu.txt"); PyTorch $($py -c 'import torch;print(torch.__version__)')"
build=$root/build-gpu
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMEDDIFF_WITH_ITK=OFF -DMEDDIFF_CUDA=ON \
  -DMEDDIFF_USE_CCACHE=OFF -DMEDDIFF_FMT_HEADER_ONLY=ON -DCMAKE_PREFIX_PATH="$torch_prefix;$deps/usr" \
  -DMEDDIFF_CUDA_ARCHITECTURES="${arch:-90}" > "$out/configure.log" 2>&1 || { log "configure failed (configure.log)"; tail -20 "$out/configure.log"; exit 1; }
cmake --build "$build" -j "$(nproc)" --target test_ops_gpu test_gpu meddiff-gpu-check > "$out/build.log" 2>&1 \
  || { log "build failed (build.log)"; grep -m 20 -E "error" "$out/build.log"; exit 1; }
log "built in $(( $(date +%s) - t0 )) s"
status=0
( cd "$build" && ctest -L gpu --output-on-failure --timeout 300 ) > "$out/ctest-gpu.txt" 2>&1 || status=1
log "ctest -L gpu: $(grep -E 'tests passed|tests failed' "$out/ctest-gpu.txt" | tail -1)"
"$build/apps/gpu_check/meddiff-gpu-check" "$out" --steps 30 --configs "$root/configs" > "$out/run.txt" 2>&1 || status=1
cat "$out/gpu-check.txt" 2>/dev/null | tee -a "$out/gpu-check.log" || tail -20 "$out/run.txt"
log "done in $(( $(date +%s) - t0 )) s, status $status"
exit $status
