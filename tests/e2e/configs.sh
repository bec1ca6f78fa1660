#!/usr/bin/env bash
# Shipped configs and the README's key table stay true. Usage: configs.sh MEDDIFF SOURCE_DIR WORKDIR
set -euo pipefail
M=$1; SRC=$2; W=$3
rm -rf "$W"; mkdir -p "$W"; cd "$W"
fail() { echo "FAIL: $*"; exit 1; }
# Every shipped config resolves and validates; --dry-run (which measures real training steps) runs on
# the demo config, small enough for CI (the README's memory table has the others' figures).
for f in "$SRC"/configs/*.json; do
  "$M" train-vqgan --config "$f" --print-config > out.txt 2>&1 || { cat out.txt; fail "train-vqgan --print-config $f"; }
  "$M" train-ldm --config "$f" --print-config > out.txt 2>&1 || { cat out.txt; fail "train-ldm --print-config $f"; }
  echo "ok: $(basename "$f")"
done
"$M" train-vqgan --config "$SRC/configs/demo-mr.json" --dry-run > out.txt 2>&1 || { cat out.txt; fail "train-vqgan --dry-run demo-mr"; }
grep -q "GiB peak resident memory at micro-batch" out.txt || fail "dry run reports no measured memory: $(cat out.txt)"
"$M" train-ldm --config "$SRC/configs/demo-mr.json" --dry-run > out.txt 2>&1 || { cat out.txt; fail "train-ldm --dry-run demo-mr"; }
grep -q "LDM: .* GiB peak resident memory" out.txt || fail "LDM dry run reports no measured memory: $(cat out.txt)"
# above 64^3 voxels the dry run measures two reduced shapes (multiples of the downsampling) at micro-batch 2
"$M" train-vqgan --config "$SRC/configs/demo-mr.json" --set 'data.shape=[96,96,48]' --dry-run > out.txt 2>&1 \
  || { cat out.txt; fail "train-vqgan --dry-run at 96x96x48"; }
grep -q "at the reduced shapes 32x32x16 and 40x40x20 (x,y,z)" out.txt && grep -q "micro-batch 2, extrapolated linearly" out.txt \
  || fail "dry run at 96x96x48 did not use the reduced probes: $(cat out.txt)"
for m in mr ct; do
  "$M" demo --print-config --modality $m > demo.json
  diff -u "$SRC/configs/demo-$m.json" demo.json || fail "configs/demo-$m.json differs from 'meddiff demo --print-config --modality $m'"
done
echo '{"vqgan": {"n_codez": 8}}' > typo.json
set +e; "$M" train-vqgan --config typo.json --dry-run 2>err.txt; rc=$?; set -e
[[ $rc == 1 ]] || fail "unknown key: exit $rc"
grep -q "unknown key 'vqgan.n_codez'" err.txt || fail "unknown key message: $(cat err.txt)"
set +e; "$M" train-ldm --config "$SRC/configs/demo-mr.json" --dry-run --set ldm.unet.base_channels='"wide"' 2>err.txt; rc=$?; set -e
[[ $rc == 1 ]] && grep -q "ldm.unet.base_channels" err.txt || fail "wrong type: $(cat err.txt)"
"$M" config --keys > keys.md
awk '/<!-- config-keys:begin -->/{f=1;next}/<!-- config-keys:end -->/{f=0}f' "$SRC/README.md" > readme-keys.md
diff -u keys.md readme-keys.md || fail "README config table differs from 'meddiff config --keys'"
echo "e2e configs: ok"
