#!/usr/bin/env bash
# Reproduces the README's "sizes and memory" table on this machine: for every shipped config, the
# --dry-run estimate of both stages against the peak resident memory (/usr/bin/time -v) of a real
# training run of a few steps on phantoms of the config's shape. Slow on a laptop (tens of minutes).
#   scripts/memory-table.sh [WORKDIR] [CONFIG ...]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
M=${MEDDIFF:-$root/build/apps/meddiff/meddiff}
W=${1:-/tmp/meddiff-memory}; shift || true
configs=()
for c in "$@"; do configs+=("$(cd "$(dirname "$c")" && pwd)/$(basename "$c")"); done
[[ ${#configs[@]} -gt 0 ]] || configs=("$root"/configs/*.json)
mkdir -p "$W"; cd "$W"
peak_gib() { awk '/Maximum resident set size/ {printf "%.2f", $6 / 1048576}' "$1"; }
step_s() { grep -o '[0-9.]* s/step' "$1" | tail -1 | cut -d' ' -f1 || true; }
echo "| config | stage | micro-batch | --dry-run estimate (GiB) | measured peak RSS (GiB) | s/step |"
echo "|---|---|---|---|---|---|"
for cfg in "${configs[@]}"; do
  name=$(basename "$cfg" .json)
  read -r mod x y z sx sy sz vb lb < <(python3 - "$cfg" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
d = c["data"]; s = d.get("shape", [32, 32, 32]); sp = d.get("spacing", [0, 0, 0])
sp = [x if x > 0 else 1.0 for x in sp]
print(d.get("modality", "mr"), *s, *sp, c.get("vqgan_train", {}).get("batch_size", 2), c.get("ldm_train", {}).get("batch_size", 4))
PY
)
  rm -rf "$name"; mkdir "$name"
  # phantoms a little larger than the training shape (foreground crops need room), at the config's spacing
  "$M" phantoms --modality "$mod" --count 4 --shape "$((x + x / 4)),$((y + y / 4)),$((z + z / 4))" --spacing "$sx,$sy,$sz" \
    --out "$name/data" > /dev/null 2>&1
  set_data=(--set "data.manifest=$W/$name/data/manifest.json")
  quiet=(--set vqgan_train.val_every=100000 --set vqgan_train.ckpt_every=100000 --set ldm_train.val_every=100000
         --set ldm_train.ckpt_every=100000 --set vqgan_train.device='"cpu"' --set ldm_train.device='"cpu"')
  "$M" train-vqgan --config "$cfg" "${set_data[@]}" "${quiet[@]}" --dry-run > "$name/vq-dry.txt" 2>&1
  "$M" train-ldm --config "$cfg" "${set_data[@]}" "${quiet[@]}" --dry-run > "$name/ldm-dry.txt" 2>&1
  for phase in plain gan; do
    gan=100000; [[ $phase == gan ]] && gan=0
    /usr/bin/time -v "$M" train-vqgan --config "$cfg" "${set_data[@]}" "${quiet[@]}" --set vqgan_train.steps=3 \
      --set vqgan_train.gan_start=$gan --out "$name/vq-$phase" > "$name/vq-$phase.txt" 2>&1
  done
  /usr/bin/time -v "$M" train-ldm --config "$cfg" "${set_data[@]}" "${quiet[@]}" --set ldm_train.steps=3 \
    --vqgan "$name/vq-plain/last.pt" --out "$name/ldm" > "$name/ldm.txt" 2>&1
  est_vq=$(grep -o 'before vqgan_train.gan_start: [0-9.]* GiB' "$name/vq-dry.txt" | grep -o '[0-9.]* GiB' | cut -d' ' -f1 || true)
  est_gan=$(grep -o 'adversarial terms (from vqgan_train.gan_start): [0-9.]* GiB' "$name/vq-dry.txt" | grep -o '[0-9.]* GiB' | cut -d' ' -f1 || true)
  est_ldm=$(grep -o 'LDM: [0-9.]* GiB' "$name/ldm-dry.txt" | grep -o '[0-9.]* GiB' | cut -d' ' -f1 || true)
  echo "| $name | VQ-GAN | $vb | ${est_vq:-?} | $(peak_gib "$name/vq-plain.txt") | $(step_s "$name/vq-plain.txt") |"
  echo "| $name | VQ-GAN, adversarial phase | $vb | ${est_gan:-not reached} | $(peak_gib "$name/vq-gan.txt") | $(step_s "$name/vq-gan.txt") |"
  echo "| $name | LDM | $lb | ${est_ldm:-?} | $(peak_gib "$name/ldm.txt") | $(step_s "$name/ldm.txt") |"
done
