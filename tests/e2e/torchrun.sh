#!/usr/bin/env bash
# Data-parallel runs as the README gives them: torchrun (from the torch wheel in .venv) starts 2 CPU
# processes of train-vqgan, train-ldm (then a resume of it) and sample; a single process with the
# global batch trains the same weights, and the sampled volumes equal those of one process.
# Usage: torchrun.sh MEDDIFF SOURCE_DIR WORKDIR (exit 77: no torchrun)
set -euo pipefail
M=$(realpath "$1"); SRC=$(realpath "$2"); W=$3
TR="$SRC/.venv/bin/torchrun"; PY="$SRC/.venv/bin/python"
[[ -x $TR ]] || { echo "no $TR: skipped"; exit 77; }
rm -rf "$W"; mkdir -p "$W"; cd "$W"
fail() { echo "FAIL: $*"; exit 1; }
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# A rank that dies of a signal while the ranks connect (inside LibTorch's TCPStore client or Gloo; meddiff
# names the step in its crash line) is shown and the launch tried once more: that crash has been seen once
# in many CI runs and never reproduced. Any other failure, or a second crash, fails the test.
launch2() { timeout 300 "$TR" --nproc_per_node 2 --master_port "$(free_port)" --no-python "$M" "$@"; }
run2() {
  launch2 "$@" > run2.out 2>&1 && { cat run2.out; return 0; }
  grep -q "fatal signal .* while connecting" run2.out || { cat run2.out; return 1; }
  echo "a rank crashed while connecting; its log, then the launch once more:"; cat run2.out
  launch2 "$@"
}

"$M" phantoms --modality mr --count 6 --shape 16,16,16 --out data > /dev/null 2>&1
common=(--set data.manifest=data/manifest.json --set data.shape=[16,16,16] --set vqgan.n_hiddens=4
        --set vqgan.downsample=[2,2,2] --set vqgan.n_codes=16 --set vqgan.disc_channels=4 --set vqgan.disc_layers=2
        --set vqgan_train.steps=3 --set vqgan_train.gan_start=1 --set vqgan_train.device='"cpu"'
        --set ldm_train.device='"cpu"' --set ldm.timesteps=20 --set sample.steps=4 --set ldm.unet.base_channels=8 --set ldm.unet.channel_mults=[1,2]
        --set ldm.unet.downsample=[[2,2,2]] --set ldm.unet.attention_levels=[1] --set ldm.unet.attention_heads=2
        --set ldm_train.steps=2 --set ldm_train.ckpt_every=2)

run2 train-vqgan "${common[@]}" --set vqgan_train.batch_size=1 --out vq2 > vq2.log 2>&1 || { cat vq2.log; fail "torchrun train-vqgan"; }
"$M" train-vqgan "${common[@]}" --set vqgan_train.batch_size=2 --out vq1 > vq1.log 2>&1 || { cat vq1.log; fail "train-vqgan"; }
run2 train-ldm "${common[@]}" --set ldm_train.batch_size=1 --vqgan vq1/last.pt --out ldm2 > ldm2.log 2>&1 || { cat ldm2.log; fail "torchrun train-ldm"; }
run2 train-ldm "${common[@]}" --set ldm_train.batch_size=1 --set ldm_train.steps=4 --vqgan vq1/last.pt --out ldm2 --resume > ldm2r.log 2>&1 \
  || { cat ldm2r.log; fail "torchrun train-ldm --resume"; }
"$M" train-ldm "${common[@]}" --set ldm_train.batch_size=2 --set ldm_train.steps=4 --vqgan vq1/last.pt --out ldm1 > ldm1.log 2>&1 || { cat ldm1.log; fail "train-ldm"; }
grep -q "data-parallel: 2 ranks (torchrun, gloo)" vq2.log || { cat vq2.log; fail "no data-parallel line"; }
grep -q "resuming" ldm2r.log || fail "no resume"

run2 sample --ldm ldm1/last.pt -n 5 --steps 4 --seed 3 --out s2 > s2.log 2>&1 || { cat s2.log; fail "torchrun sample"; }
"$M" sample --ldm ldm1/last.pt -n 5 --steps 4 --seed 3 --out s1 > s1.log 2>&1 || { cat s1.log; fail "sample"; }

# Fine-tuning an imported MAISI U-Net (train-ldm --init) on 2 ranks equals one process with the global batch.
F="$SRC/tests/fixtures/monai"
"$PY" - "$F" <<'PY'
import json, sys
n = json.load(open(f"{sys.argv[1]}/networks.json"))
ae = dict(n["autoencoder_maisi"], _target_="monai.apps.generation.maisi.networks.autoencoderkl_maisi.AutoencoderKlMaisi",
          latent_channels="@latent_channels")
u = dict(n["unet_maisi"], _target_="monai.apps.generation.maisi.networks.diffusion_model_unet_maisi.DiffusionModelUNetMaisi",
         in_channels="@latent_channels", out_channels="@latent_channels")
json.dump({"latent_channels": 4, "autoencoder_def": ae, "diffusion_unet_def": u,
           "noise_scheduler": {"_target_": "monai.networks.schedulers.rectified_flow.RFlowScheduler", "num_train_timesteps": 1000,
                               "use_discrete_timesteps": False, "use_timestep_transform": True}},
          open("config_network_rflow.json", "w"))
PY
"$M" import maisi --network-config config_network_rflow.json --autoencoder "$F/autoencoder_maisi.pt" --unet "$F/unet_maisi.pt" --out maisi \
  > maisi.log 2>&1 || { cat maisi.log; fail "import maisi"; }
"$M" phantoms --modality ct --count 3 --shape 32,32,32 --out ct > /dev/null 2>&1
ft=(--init maisi/ldm.pt --set data.manifest=ct/manifest.json --set data.modality='"ct"' --set data.shape=[32,32,32]
    --set ldm_train.steps=2 --set ldm_train.warmup=1 --set ldm_train.device='"cpu"')
run2 train-ldm "${ft[@]}" --set ldm_train.batch_size=1 --out ft2 > ft2.log 2>&1 || { cat ft2.log; fail "torchrun train-ldm --init"; }
"$M" train-ldm "${ft[@]}" --set ldm_train.batch_size=2 --out ft1 > ft1.log 2>&1 || { cat ft1.log; fail "train-ldm --init"; }

"$PY" - <<'PY'
import json, torch, nibabel as nib, numpy as np
def diff(a, b):
    A = torch.load(a)["state_dict"]; B = torch.load(b)["state_dict"]
    return max((v - B[k]).abs().max().item() for k, v in A.items() if v.is_floating_point())
d = diff("vq1/last.pt", "vq2/last.pt"); assert d < 1e-5, f"VQ-GAN: 2 ranks x 1 vs 1 x 2 differ by {d}"
d = diff("ldm1/last.pt", "ldm2/last.pt"); assert d < 1e-5, f"LDM (resumed): 2 ranks x 1 vs 1 x 2 differ by {d}"
d = diff("ft1/last.pt", "ft2/last.pt"); assert d < 1e-5, f"fine-tuned MAISI U-Net: 2 ranks x 1 vs 1 x 2 differ by {d}"
m1 = [json.loads(l) for l in open("s1/manifest.jsonl")]; m2 = [json.loads(l) for l in open("s2/manifest.jsonl")]
assert len(m1) == len(m2) == 5, (len(m1), len(m2))
for i in range(5):
    a = nib.load(f"s1/synth_{i:06d}.nii.gz").get_fdata(); b = nib.load(f"s2/synth_{i:06d}.nii.gz").get_fdata()
    assert np.array_equal(a, b), f"volume {i} differs between 1 and 2 ranks"
print("torchrun: weights equal to one process with the global batch (VQ-GAN, LDM resumed, fine-tuned MAISI U-Net); 5 volumes equal: ok")
PY
