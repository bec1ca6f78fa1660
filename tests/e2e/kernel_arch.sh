#!/usr/bin/env bash
# The CUDA kernels library holds machine code for sm_80 and sm_90 and compute_90 PTX for every kernel
# source (kernels/*.cu), as MEDDIFF_CUDA_ARCHITECTURES asks by default.
#   kernel_arch.sh LIBRARY CUOBJDUMP SOURCE_DIR
set -euo pipefail
lib=$1 cuobjdump=$2 src=$3
elf=$("$cuobjdump" --list-elf "$lib")
ptx=$("$cuobjdump" --list-ptx "$lib")
status=0
for cu in "$src"/kernels/*.cu; do
  name=$(basename "$cu" .cu)
  for arch in sm_80 sm_90; do
    if ! grep -E "${name}\.cu\.o" -A 20 <<<"$elf" | grep -q "$arch"; then
      echo "FAIL: $name has no $arch machine code"; status=1
    fi
  done
  if ! grep -E "${name}\.cu\.o" -A 20 <<<"$ptx" | grep -q "sm_90"; then
    echo "FAIL: $name has no compute_90 PTX"; status=1
  fi
done
[[ $status == 0 ]] && echo "every kernel: sm_80 and sm_90 machine code, compute_90 PTX"
exit $status
