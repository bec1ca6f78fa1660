#!/usr/bin/env bash
# End to end: the meddiff binary as a user runs it. Usage: cli.sh MEDDIFF WORKDIR
set -euo pipefail
M=$1; W=$2
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
rm -rf "$W"; mkdir -p "$W"; cd "$W"
fail() { echo "FAIL: $*"; exit 1; }

"$M" --help | grep -q "phantoms" || fail "--help lists no commands"
"$M" --version | grep -q "LibTorch" || fail "--version has no LibTorch line"
set +e; "$M" no-such-command 2>err.txt; rc=$?; set -e
[[ $rc == 2 ]] || fail "unknown command exit $rc, want 2"
grep -q "unknown command 'no-such-command'" err.txt || fail "unknown command message"
grep -q "convert" err.txt || fail "unknown command does not list commands"

"$M" phantoms --modality mr --count 2 --shape 16,16,16 --out data
[[ -f data/manifest.json && -f data/images/case_0001.nii.gz && -f data/labels/case_0001.nii.gz ]] || fail "phantoms outputs"
"$M" convert data/images/case_0001.nii.gz series/
"$M" convert series back.nii.gz
"$M" info back.nii.gz --json > info.json
grep -q '"modality": "MR"' info.json || fail "info --json modality"
"$M" preview back.nii.gz -o p.png
[[ -s p.png ]] || fail "preview PNG"

set +e; "$M" convert missing.nii.gz out.nii.gz 2>err.txt; rc=$?; set -e
[[ $rc == 1 ]] || fail "missing input exit $rc"
[[ $(wc -l < err.txt) == 1 ]] || fail "error is not one line: $(cat err.txt)"
grep -q "missing.nii.gz: no such file" err.txt || fail "missing input message: $(cat err.txt)"
[[ ! -e out.nii.gz ]] || fail "output left behind"
# an output where no folder can be made: one line naming the path and the reason, not a raw "filesystem error"
set +e; "$M" phantoms --count 1 --shape 8,8,8 --out /proc/meddiff-nowhere/data 2>err.txt; rc=$?; set -e
[[ $rc == 1 && $(wc -l < err.txt) == 1 ]] && grep -q "/proc/meddiff-nowhere" err.txt && ! grep -q "filesystem error" err.txt \
  || fail "unwritable --out: exit $rc, $(cat err.txt)"
# training: --resume and --force together are refused
set +e; "$M" train-vqgan --config configs-none.json --resume --force --out x 2>err.txt; rc=$?; set -e
[[ $rc == 2 ]] && grep -q "give one" err.txt || fail "--resume --force: exit $rc, $(cat err.txt)"
# bench: every subset of parts gives its table and JSON (the demo's sizes, one repeat)
"$M" bench --parts unet --repeat 1 > bench-unet.txt || fail "bench --parts unet"
grep -q "U-Net forward" bench-unet.txt || fail "bench table: $(cat bench-unet.txt)"
"$M" bench --parts vqgan,samplers --repeat 1 --json > bench.json || fail "bench --parts vqgan,samplers"
python3 - <<'PY' || fail "bench JSON"
import json
c = json.load(open("bench.json"))["configs"][0]
assert c["unet_forward"]["median_s"] > 0 and c["vqgan_decode"]["median_s"] > 0, c
assert {s["sampler"] for s in c["samplers"]} == {"ddpm", "ddim", "dpmpp2m"}, c["samplers"]
PY
# bench --network: MONAI-family networks from a bundle-style network config ("@" references), parameter counts as MONAI's
# (the tiny fixtures' networks: 88,804 U-Net and 38,917 autoencoder parameters, as MONAI 1.6.1 counts them)
python3 - "$SRC/tests/fixtures/monai/networks.json" <<'PY' || fail "tiny network config"
import json, sys
n = json.load(open(sys.argv[1]))
u = dict(n["unet_maisi"], _target_="monai.apps.generation.maisi.networks.diffusion_model_unet_maisi.DiffusionModelUNetMaisi", in_channels="@latent_channels", out_channels="@latent_channels")
ae = dict(n["autoencoder_maisi"], _target_="monai.apps.generation.maisi.networks.autoencoderkl_maisi.AutoencoderKlMaisi", latent_channels="@latent_channels")
json.dump({"latent_channels": 4, "diffusion_unet_def": u, "autoencoder_def": ae}, open("tiny-network.json", "w"))
PY
"$M" bench --network tiny-network.json --network-latent 8,8,16 --repeat 1 --json > bench-net.json || fail "bench --network"
python3 - <<'PY' || fail "bench --network JSON: $(cat bench-net.json)"
import json
n = json.load(open("bench-net.json"))["networks"][0]
assert n["latent_spatial"] == [8, 8, 16], n
assert n["unet_forward"]["median_s"] > 0 and n["autoencoder_decode"]["median_s"] > 0, n
assert (n["unet_parameters"], n["autoencoder_parameters"]) == (88804, 38917), n
PY
set +e; "$M" bench --network tiny-network.json --network-latent 8,8,12 2>err.txt; rc=$?; set -e
[[ $rc == 1 ]] && grep -q "12 is not a multiple of the U-Net's downsampling 8" err.txt || fail "bench --network-latent 8,8,12: exit $rc, $(cat err.txt)"
set +e; "$M" bench --parts gpu 2>err.txt; rc=$?; set -e
[[ $rc == 2 ]] && grep -q "unknown part 'gpu'" err.txt || fail "bench --parts gpu: exit $rc, $(cat err.txt)"
echo "e2e cli: ok"
