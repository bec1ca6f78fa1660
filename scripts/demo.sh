#!/usr/bin/env bash
# Set up (scripts/setup.sh), build, then run `meddiff demo`: the whole pipeline on built-in phantoms
# (no data, no download). Output folder: $1 (default ./demo-out); further arguments go to meddiff demo
# (e.g. --quick, --modality ct).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$(realpath -m "${1:-$root/demo-out}")
shift || true
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
source "$root/scripts/env.sh"
M="${MEDDIFF_BUILD_DIR:-$root/build}/apps/meddiff/meddiff"
start=$(date +%s)
rm -rf "$out"
"$M" --version
"$M" demo --out "$out" "$@"
if command -v dciodvfy >/dev/null; then
  errors=0; files=0
  for f in "$out"/samples/*_dicom/*.dcm; do
    files=$((files + 1))
    if dciodvfy -new "$f" 2>&1 | grep -qE "^(Error|Warning)"; then errors=$((errors + 1)); fi
  done
  echo "dciodvfy -new: $files DICOM files, $errors with errors or warnings"
fi
if [[ -x "$root/.venv/bin/python" ]] && grep -q '"modality": "MR"' "$out/samples/synth_000000.json"; then
  echo "lesion check on the real phantoms:"; "$root/.venv/bin/python" "$root/scripts/check_lesions.py" "$out/data"
  echo "lesion check on the synthetic samples:"; "$root/.venv/bin/python" "$root/scripts/check_lesions.py" "$out/samples"
fi
echo "demo: done in $(( $(date +%s) - start )) s; report: $out/report.md"
cat "$out/report.md"
