#!/usr/bin/env bash
# nnU-Net v2's own dataset check on a sampled dataset: tiny label-conditioned models, two sampling
# shards into one nnU-Net folder, then nnunetv2's verify_dataset_integrity (as
# `nnUNetv2_plan_and_preprocess --verify_dataset_integrity` runs it). nnunetv2 comes from PyPI into a
# throwaway virtual environment (cached in ~/.cache/meddiff/nnunet-venv; it uses the project's torch,
# so only nnU-Net's light dependencies are downloaded). Skipped (exit 77) when it cannot be installed.
# Then the same for a 4-sequence BraTS-layout phantom set (4 channels per sampled case).
# Usage: nnunet_check.sh MEDDIFF SOURCE_DIR WORKDIR
set -euo pipefail
M=$1; SRC=$2; W=$3
fail() { echo "FAIL: $*"; exit 1; }
PROJECT_PY="$SRC/.venv/bin/python"
[[ -x $PROJECT_PY ]] || fail "no $PROJECT_PY (run scripts/setup.sh)"
venv=${MEDDIFF_NNUNET_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/meddiff/nnunet-venv}
# The cached environment finds torch and numpy through a .pth naming the project's site-packages (resolved: a clone's
# .venv may be a link, and the clone that made the cache may be gone); it is pointed at this project's every time and
# rebuilt when nnU-Net does not import.
site=$(realpath "$("$PROJECT_PY" -c 'import site; print(site.getsitepackages()[0])')")
point_at_project() { echo "$site" > "$("$venv/bin/python" -c 'import site; print(site.getsitepackages()[0])')/meddiff-torch.pth"; }
imports() { "$venv/bin/python" -c 'import numpy, torch, nnunetv2.experiment_planning.verify_dataset_integrity'; }
if ! { [[ -f $venv/.ready ]] && point_at_project && imports; } > /dev/null 2>&1; then
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  if ! { python3 -m venv "$venv" && point_at_project &&
         "$venv/bin/pip" install -q --no-deps nnunetv2 acvl-utils dynamic-network-architectures batchgeneratorsv2 batchgenerators &&
         "$venv/bin/pip" install -q scipy scikit-learn scikit-image SimpleITK pandas tifffile nibabel tqdm requests yacs einops \
           blosc2 threadpoolctl; } > "$W.pip.log" 2>&1 || ! imports >> "$W.pip.log" 2>&1; then
    echo "skipped: nnunetv2 could not be installed from PyPI (see $W.pip.log)"
    tail -5 "$W.pip.log"
    rm -rf "$venv"
    exit 77
  fi
  touch "$venv/.ready"
fi
rm -rf "$W"; mkdir -p "$W"; cd "$W"

"$M" phantoms --modality ct --count 6 --shape 16,16,16 --spacing 1.5,1.5,2 --out data > /dev/null 2>&1
common=(--set data.manifest=data/manifest.json --set data.modality='"ct"' --set data.shape=[16,16,16] --set vqgan.n_hiddens=4
        --set vqgan.downsample=[2,2,2] --set vqgan.n_codes=32 --set vqgan.disc_channels=4 --set vqgan.disc_layers=2
        --set vqgan_train.device='"cpu"' --set ldm_train.device='"cpu"' --set ldm.timesteps=50
        --set ldm.unet.base_channels=8 --set ldm.unet.channel_mults=[1,2] --set ldm.unet.downsample=[[2,2,2]]
        --set ldm.unet.attention_levels=[1] --set ldm.unet.attention_heads=2 --set ldm_train.batch_size=2
        --set data.labels='"condition"' --set 'data.label_names=["air","soft_tissue","lung","bone","nodule"]')
"$M" train-vqgan "${common[@]}" --set vqgan_train.steps=2 --out vq > /dev/null 2>&1
"$M" train-ldm "${common[@]}" --set ldm_train.steps=2 --vqgan vq/last.pt --out ldm > /dev/null 2>&1
raw=$W/nnUNet_raw; ds=$raw/Dataset901_Synth
for k in 1 2; do
  "$M" sample --ldm ldm/last.pt -n 5 --steps 4 --qc-retries 0 --layout nnunet --name Synth --shard $k/2 --out "$ds" > shard$k.log 2>&1 \
    || { cat shard$k.log; fail "sample --shard $k/2"; }
done
pairs=$(ls "$ds/labelsTr" | wc -l)
[[ $pairs == 5 && $(ls "$ds/imagesTr" | wc -l) == 5 ]] || fail "expected 5 image/label pairs, got $pairs labels"
n=$("$PROJECT_PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["numTraining"])' "$ds/dataset.json")
[[ $n == 5 ]] || fail "dataset.json numTraining is $n for 5 pairs"
# a script file with a main guard: nnU-Net's worker pool starts processes that import __main__ again
cat > verify.py <<'PY'
import sys
from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

if __name__ == "__main__":
    verify_dataset_integrity(sys.argv[1], num_processes=1)
PY
check() { nnUNet_raw=$raw nnUNet_preprocessed=$W/pre nnUNet_results=$W/res timeout 600 "$venv/bin/python" verify.py "$1"; }
check "$ds" > verify.log 2>&1 || { cat verify.log; fail "nnU-Net's verify_dataset_integrity rejected the sampled dataset"; }
echo "nnU-Net verify_dataset_integrity: $ds (5 pairs from 2 shards, numTraining 5): ok"
# the check bites: a dataset with a missing label file is rejected
cp -r "$ds" "$raw/Dataset902_Broken"
rm "$raw/Dataset902_Broken/labelsTr/Synth_0003.nii.gz"
if check "$raw/Dataset902_Broken" > broken.log 2>&1; then fail "verify_dataset_integrity accepted a dataset with a missing label"; fi

# Four MR sequences in the BraTS layout: a 4-channel VQ-GAN trained on patches, the LDM, then 4 channels + labels in
# the nnU-Net layout (CASE_0000..CASE_0003), which nnU-Net's check accepts.
"$M" phantoms --layout brats --count 6 --shape 24,24,16 --out brats > /dev/null 2>&1 || fail "phantoms --layout brats"
mc=(--set data.manifest='"brats"' --set 'data.source.classes="brats/classes.csv"' --set data.shape=[24,24,16] --set vqgan.n_hiddens=4
    --set vqgan.downsample=[2,2,2] --set vqgan.n_codes=32 --set vqgan.disc_channels=4 --set vqgan.disc_layers=2
    --set vqgan_train.device='"cpu"' --set ldm_train.device='"cpu"' --set ldm.timesteps=50 --set vqgan_train.patch=[16,16,8]
    --set ldm.unet.base_channels=8 --set ldm.unet.channel_mults=[1,2] --set ldm.unet.downsample=[[2,2,2]]
    --set ldm.unet.attention_levels=[1] --set ldm.unet.attention_heads=2 --set ldm_train.batch_size=2 --set data.labels='"condition"')
"$M" train-vqgan "${mc[@]}" --set vqgan_train.steps=2 --out vq4 > vq4.log 2>&1 || { cat vq4.log; fail "train-vqgan on 4 sequences"; }
grep -q "x 4 channels (t1, t1ce, t2, flair)" vq4.log || fail "train-vqgan did not take the 4 sequences: $(cat vq4.log)"
"$M" train-ldm "${mc[@]}" --set ldm_train.steps=2 --vqgan vq4/last.pt --out ldm4 > ldm4.log 2>&1 || { cat ldm4.log; fail "train-ldm on 4 sequences"; }
ds4=$raw/Dataset903_Brats
"$M" sample --ldm ldm4/last.pt -n 3 --steps 3 --qc-retries 0 --layout nnunet --name Brats --out "$ds4" > s4.log 2>&1 || { cat s4.log; fail "sample 4 channels"; }
[[ $(ls "$ds4/imagesTr" | wc -l) == 12 && $(ls "$ds4/labelsTr" | wc -l) == 3 ]] || fail "expected 12 images and 3 labels: $(ls "$ds4/imagesTr" "$ds4/labelsTr")"
for c in 0000 0001 0002 0003; do [[ -f $ds4/imagesTr/Brats_0002_$c.nii.gz ]] || fail "no Brats_0002_$c.nii.gz"; done
chan=$("$PROJECT_PY" -c 'import json,sys; print(",".join(json.load(open(sys.argv[1]))["channel_names"].values()))' "$ds4/dataset.json")
[[ $chan == t1,t1ce,t2,flair ]] || fail "dataset.json channel_names: $chan"
check "$ds4" > verify4.log 2>&1 || { cat verify4.log; fail "nnU-Net's verify_dataset_integrity rejected the 4-channel dataset"; }
echo "nnU-Net verify_dataset_integrity: $ds4 (3 cases x 4 channels from a BraTS-layout training set): ok"
echo "e2e nnU-Net check: ok"
