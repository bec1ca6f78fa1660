#!/usr/bin/env bash
# `meddiff demo --quick` end to end: NIfTI, DICOM (dciodvfy -new clean), PNG and a report.
# Usage: demo_quick.sh MEDDIFF WORKDIR
set -euo pipefail
M=$1; W=$2
rm -rf "$W"; mkdir -p "$W"; cd "$W"
fail() { echo "FAIL: $*"; exit 1; }
"$M" demo --quick --out demo
for f in demo/report.md demo/vqgan/last.pt demo/ldm/last.pt demo/samples/manifest.jsonl demo/samples/synth_000007.nii.gz \
         demo/samples/synth_000007.png demo/samples/synth_000007_dicom/IM000001.dcm; do
  [[ -e $f ]] || fail "missing $f"
done
[[ $(wc -l < demo/samples/manifest.jsonl) == 8 ]] || fail "manifest lines"
if command -v dciodvfy > /dev/null; then
  out=$(dciodvfy -new demo/samples/synth_000003_dicom/IM000001.dcm 2>&1)
  if grep -qE "^(Error|Warning)" <<<"$out"; then echo "$out"; fail "dciodvfy"; fi
fi
grep -q "SYNTHETIC" demo/report.md || fail "report does not say synthetic"
set +e; "$M" demo --quick --out demo 2>err.txt; rc=$?; set -e
[[ $rc == 1 ]] && grep -q "earlier demo" err.txt || fail "re-running into a used folder must refuse"
echo "e2e demo --quick: ok"
