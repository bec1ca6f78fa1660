#!/usr/bin/env bash
# Set up (scripts/setup.sh), build, then run the most complete end-to-end path meddiff has, on its
# built-in phantoms (no data, no download). Output folder: $1 (default ./demo-out).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$(realpath -m "${1:-$root/demo-out}")
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
source "$root/scripts/env.sh"
M="${MEDDIFF_BUILD_DIR:-$root/build}/apps/meddiff/meddiff"
start=$(date +%s)
rm -rf "$out"; mkdir -p "$out"
"$M" --version
for modality in mr ct; do
  if [[ $modality == mr ]]; then shape=48,48,48; spacing=1.2,1,1; else shape=32,64,64; spacing=2.5,0.8,0.8; fi
  "$M" phantoms --modality $modality --count 4 --shape $shape --spacing $spacing --seed 1 --out "$out/data-$modality"
  "$M" convert "$out/data-$modality/images/case_0001.nii.gz" "$out/dicom-$modality/"
  "$M" convert "$out/dicom-$modality" "$out/roundtrip-$modality.nii.gz"
  "$M" info "$out/dicom-$modality"
  for c in 0 1; do
    "$M" preview "$out/data-$modality/images/case_000$c.nii.gz" -o "$out/preview-$modality-class$c.png"
  done
  if command -v dciodvfy >/dev/null; then
    errors=$(for f in "$out/dicom-$modality"/*.dcm; do dciodvfy -new "$f" 2>&1; done | grep -cE "^(Error|Warning)" || true)
    echo "dciodvfy -new on $(ls "$out/dicom-$modality" | wc -l) $modality slices: $errors errors/warnings"
  fi
done
echo "demo: done in $(( $(date +%s) - start )) s; outputs in $out"
ls "$out"
