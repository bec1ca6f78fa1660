#!/usr/bin/env bash
# The figures of real-size datasets (README "The preprocessed dataset cache", issue 24): cache build vs the serial
# loader, a second start, training peak RSS with 50 and 400 cases of 4 x 96^3, step time with the cache vs in
# memory, a cache built once by 2 torchrun ranks, and a 4-sequence BraTS-layout set at 240x240x155 through
# train-vqgan (96^3 patches), train-ldm and `sample --layout nnunet` checked by nnU-Net v2. Minutes to an hour on
# 2 cores; ~12 GB of disk.  Usage: scripts/dataset-figures.sh WORKDIR   (after scripts/setup.sh and scripts/build.sh)
set -uo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
M=$SRC/build/apps/meddiff/meddiff
W=${1:?usage: dataset-figures.sh WORKDIR}
mkdir -p "$W" && cd "$W"
secs() { echo "$(date +%s.%N) - $1" | bc | cut -c1-7; }
run() {  # name, arguments of train-vqgan: wall time, peak RSS, mean step time of steps 2..N
  local n=$1; shift
  rm -rf "out-$n"
  /usr/bin/time -v "$M" train-vqgan "$@" --set vqgan_train.log_every=1 --out "out-$n" > "$n.log" 2> "$n.err"
  local rc=$?
  local per=$("$SRC/.venv/bin/python" -c "
import json
s = [1 / j['it_per_s'] for j in map(json.loads, open('out-$n/metrics.jsonl')) if 'it_per_s' in j and j['step'] > 1]
print('%.3f s/step (steps 2..)' % (sum(s) / len(s)) if s else '')")
  echo "$n: rc=$rc wall=$(grep 'Elapsed' "$n.err" | awk '{print $NF}') peak_rss_kb=$(grep 'Maximum resident' "$n.err" | awk '{print $NF}') $per"
  grep -hE "preprocessing .*took|loading .*took|from the cache|building the dataset" "$n.err" | tail -2
}
if [[ ! -f p400/manifest.json ]]; then
  s=$(date +%s.%N); "$M" phantoms --sequences t1,t1ce,t2,flair --count 400 --shape 96,96,96 --out p400 > gen.log 2>&1
  echo "400 phantoms of 4 x 96^3: $(secs "$s") s"
fi
"$SRC/.venv/bin/python" -c "
import json
m = json.load(open('p400/manifest.json')); m['cases'] = m['cases'][:50]; json.dump(m, open('p400/manifest50.json', 'w'))"
C=(--set data.shape=[96,96,96] --set vqgan.n_hiddens=8 --set vqgan.downsample=[4,4,4] --set vqgan_train.batch_size=2
   --set vqgan_train.gan_start=1000 --set vqgan_train.val_every=100000 --set vqgan_train.device='"cpu"' --set data.val_max=1
   --set vqgan_train.perceptual_weight=0)
P50=(--set data.manifest='"p400/manifest50.json"') P400=(--set data.manifest='"p400/manifest.json"')
rm -rf cache50 cache400 cacheT
run serial50 "${C[@]}" "${P50[@]}" --set vqgan_train.steps=1 --threads 1
run build50 "${C[@]}" "${P50[@]}" --set vqgan_train.steps=1 --cache cache50
run again50 "${C[@]}" "${P50[@]}" --set vqgan_train.steps=1 --cache cache50
run build400 "${C[@]}" "${P400[@]}" --set vqgan_train.steps=1 --cache cache400
T=(--set vqgan_train.steps=10 --set vqgan_train.patch=[64,64,64])
run cache50 "${C[@]}" "${P50[@]}" "${T[@]}" --cache cache50
run cache400 "${C[@]}" "${P400[@]}" "${T[@]}" --cache cache400
run memory50 "${C[@]}" "${P50[@]}" "${T[@]}"
port=$("$SRC/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
s=$(date +%s.%N)
timeout 1200 "$SRC/.venv/bin/torchrun" --nproc_per_node 2 --master_port "$port" --no-python "$M" train-vqgan "${C[@]}" "${P50[@]}" \
  --set vqgan_train.steps=1 --cache cacheT --out out-torchrun > torchrun.log 2>&1
echo "torchrun x2 on an empty cache: rc=$? $(secs "$s") s; 'building' lines: $(grep -c 'building the dataset cache' torchrun.log)," \
     "'from the cache' lines: $(grep -c 'from the cache' torchrun.log), cache folders: $(ls cacheT | grep -c '^v')"

# BraTS layout, 4 sequences + seg, 240x240x155 at 1 mm
if [[ ! -f b240/classes.csv ]]; then
  s=$(date +%s.%N); "$M" phantoms --layout brats --count 10 --shape 240,240,155 --out b240 > b240-gen.log 2>&1
  echo "10 BraTS-layout phantoms at 240x240x155: $(secs "$s") s"
fi
"$M" index b240 --set data.source.classes='"b240/classes.csv"' | head -1
B=(--set data.manifest='"b240"' --set 'data.source.classes="b240/classes.csv"' --set data.shape=[192,192,144] --set data.crop='"foreground"'
   --set vqgan.n_hiddens=8 --set vqgan.downsample=[4,4,4] --set vqgan.n_codes=256 --set vqgan.disc_channels=8 --set vqgan.disc_layers=2
   --set vqgan_train.patch=[96,96,96] --set vqgan_train.batch_size=1 --set vqgan_train.gan_start=2 --set vqgan_train.val_every=4
   --set vqgan_train.perceptual_weight=0 --set data.val_fraction=0.1 --set data.labels='"condition"'
   --set vqgan_train.device='"cpu"' --set ldm_train.device='"cpu"' --set ldm.timesteps=100
   --set ldm.unet.base_channels=16 --set ldm.unet.channel_mults=[1,2] --set ldm.unet.downsample=[[2,2,2]]
   --set ldm.unet.attention_levels=[1] --set ldm.unet.attention_heads=2 --set ldm_train.batch_size=2 --cache cache-b240)
rm -rf vq240 ldm240 nnUNet_raw
/usr/bin/time -v "$M" train-vqgan "${B[@]}" --set vqgan_train.steps=4 --out vq240 > vq240.log 2> vq240.err
echo "train-vqgan (4 x 96^3 patches): rc=$? peak_rss_kb=$(grep 'Maximum resident' vq240.err | awk '{print $NF}'); $(grep -o 'train-vqgan: .*' vq240.err | tail -1)"
/usr/bin/time -v "$M" train-ldm "${B[@]}" --set ldm_train.steps=4 --vqgan vq240/last.pt --out ldm240 > ldm240.log 2> ldm240.err
echo "train-ldm: rc=$? peak_rss_kb=$(grep 'Maximum resident' ldm240.err | awk '{print $NF}'); $(grep -o 'train-ldm: .*' ldm240.err | tail -1)"
ds=nnUNet_raw/Dataset904_BraTSPhantom
/usr/bin/time -v "$M" sample --ldm ldm240/last.pt -n 2 --steps 5 --qc-retries 0 --layout nnunet --name BraTSPhantom --out $ds > s240.log 2> s240.err
echo "sample --layout nnunet: rc=$? peak_rss_kb=$(grep 'Maximum resident' s240.err | awk '{print $NF}'); $(ls $ds/imagesTr | wc -l) images, $(ls $ds/labelsTr | wc -l) label maps"
venv=${MEDDIFF_NNUNET_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/meddiff/nnunet-venv}  # made by tests/e2e/nnunet_check.sh
if [[ -x $venv/bin/python ]]; then
  printf 'import sys\nfrom nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity\nif __name__ == "__main__":\n    verify_dataset_integrity(sys.argv[1], num_processes=1)\n' > verify.py
  nnUNet_raw=$PWD/nnUNet_raw nnUNet_preprocessed=$PWD/pre nnUNet_results=$PWD/res "$venv/bin/python" verify.py $ds > verify240.log 2>&1
  echo "nnU-Net v2 verify_dataset_integrity: rc=$?"
else
  echo "nnU-Net venv not found ($venv): run ctest -R e2e.nnunet_check once to make it"
fi
