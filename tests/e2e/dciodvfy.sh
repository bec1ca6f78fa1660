#!/usr/bin/env bash
# Validates written CT and MR series with dicom3tools: dciodvfy -new per file (no error, no
# warning) and dcentvfy over each series. Usage: dciodvfy.sh MEDDIFF WORKDIR
set -euo pipefail
M=$1; W=$2
command -v dciodvfy >/dev/null || { echo "dciodvfy not installed (scripts/setup.sh installs dicom3tools)"; exit 1; }
rm -rf "$W"; mkdir -p "$W"; cd "$W"
"$M" phantoms --modality ct --count 2 --shape 24,24,8 --spacing 0.7,0.7,2.5 --out ct
"$M" phantoms --modality mr --count 2 --shape 24,24,8 --spacing 0.9,0.9,1.5 --out mr
"$M" convert ct/images/case_0001.nii.gz ct_series/
"$M" convert mr/images/case_0001.nii.gz mr_series/
status=0
for series in ct_series mr_series; do
  for f in "$series"/*.dcm; do
    out=$(dciodvfy -new "$f" 2>&1)
    if grep -qE "^(Error|Warning)" <<<"$out"; then echo "dciodvfy $f:"; echo "$out"; status=1; fi
  done
  out=$(dcentvfy "$series"/*.dcm 2>&1)
  if grep -qE "(Error|Warning)" <<<"$out"; then echo "dcentvfy $series:"; echo "$out"; status=1; fi
  echo "$series: $(ls "$series" | wc -l) files checked"
done
exit $status
