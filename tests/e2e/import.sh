#!/usr/bin/env bash
# meddiff import: MAISI-v2 files and a MONAI bundle with MONAI Generative's older key names, as torch.save wrote them
# (the networks MONAI 1.6.1 built in tests/fixtures/monai), become meddiff checkpoints whose tensors are exactly the
# source weights; weights that do not fit are one error and nothing is written; unused weights are a warning.
# Usage: import.sh MEDDIFF SOURCE_DIR WORKDIR
set -euo pipefail
M=$1; SRC=$2; W=$3
PY="$SRC/.venv/bin/python"
F="$SRC/tests/fixtures/monai"
[[ -x $PY ]] || { echo "no $PY (run scripts/setup.sh)"; exit 1; }
rm -rf "$W"; mkdir -p "$W"; cd "$W"
fail() { echo "FAIL: $*"; exit 1; }

# The inputs as users have them: NV-Generate-CTMR's network config; a bundle folder whose weights use the old names
# (attention "to_q" / "proj_attn" without "attn.", the upsampling convolution "conv" for "postconv"), the noise MONAI's
# sampling runs started from.
"$PY" - "$F" <<'PY'
import json, os, sys, torch
F = sys.argv[1]
n = json.load(open(f"{F}/networks.json"))
ae = dict(n["autoencoder_maisi"], _target_="monai.apps.generation.maisi.networks.autoencoderkl_maisi.AutoencoderKlMaisi",
          latent_channels="@latent_channels")
u = dict(n["unet_maisi"], _target_="monai.apps.generation.maisi.networks.diffusion_model_unet_maisi.DiffusionModelUNetMaisi",
         in_channels="@latent_channels", out_channels="@latent_channels")
cn = dict(n["controlnet_maisi"], _target_="monai.apps.generation.maisi.networks.controlnet_maisi.ControlNetMaisi",
          in_channels="@latent_channels")
json.dump({"spatial_dims": 3, "latent_channels": 4, "autoencoder_def": ae, "diffusion_unet_def": u, "controlnet_def": cn,
           "noise_scheduler": {"_target_": "monai.networks.schedulers.rectified_flow.RFlowScheduler", "num_train_timesteps": 1000,
                               "use_discrete_timesteps": False, "use_timestep_transform": True}},
          open("config_network_rflow.json", "w"), indent=1)
def old(k):
    k = k.replace(".attn.to_q.", ".to_q.").replace(".attn.to_k.", ".to_k.").replace(".attn.to_v.", ".to_v.")
    return k.replace(".attn.out_proj.", ".proj_attn.").replace(".postconv.", ".conv.")
os.makedirs("bundle/configs"); os.makedirs("bundle/models")
for src, dst in (("autoencoder_kl.pt", "model_autoencoder.pt"), ("unet_monai.pt", "model.pt")):
    sd = torch.load(f"{F}/{src}")
    torch.save({old(k): v for k, v in sd.items()}, f"bundle/models/{dst}")
kl = dict(n["autoencoder_kl"], _target_="generative.networks.nets.AutoencoderKL")
kl["num_channels"] = kl.pop("channels")
un = dict(n["unet_monai"], _target_="generative.networks.nets.DiffusionModelUNet")
json.dump({"spatial_dims": 3, "autoencoder_def": kl, "network_def": un,
           "noise_scheduler": {"_target_": "monai.networks.schedulers.DDIMScheduler", "num_train_timesteps": 1000,
                               "beta_start": 0.0015, "beta_end": 0.0195, "schedule": "scaled_linear_beta", "clip_sample": False},
           "set_timesteps": "$@noise_scheduler.set_timesteps(num_inference_steps=50)"}, open("bundle/configs/inference.json", "w"))
# a U-Net file that does not fit: one key missing, one unknown, one mis-shaped
f = torch.load(f"{F}/unet_maisi.pt")
sd = f["unet_state_dict"]
del sd["conv_in.conv.bias"]
sd["down_blocks.9.resnets.0.norm1.weight"] = torch.zeros(4)
sd["time_embed.0.weight"] = torch.zeros(3, 3)
torch.save(f, "bad_unet.pt")
# an attention output projection the network (include_fc false) does not use: older MONAI saved one
f = torch.load(f"{F}/unet_maisi.pt")
f["unet_state_dict"]["down_blocks.2.attentions.0.attn.out_proj.weight"] = torch.zeros(8, 8)
torch.save(f, "unet_with_unused.pt")
torch.save(torch.load(f"{F}/rflow_maisi.pt")["noise"].clone(), "maisi_noise.pt")
# MAISI's image-from-mask run: its label map as a NIfTI in RAS (MAISI's own affine diag(spacing)) and the same anatomy in
# LPS (both in-plane axes reversed), and its noise; a ControlNet file lacking weights the U-Net has (MAISI takes the U-Net's)
import nibabel as nib, numpy as np
c = torch.load(f"{F}/controlnet_rflow.pt")
lab = c["label"].numpy().astype(np.int16)
nib.save(nib.Nifti1Image(lab, np.diag([1.5, 1.5, 2.0, 1.0])), "cn_label_ras.nii.gz")
lps = np.diag([-1.5, -1.5, 2.0, 1.0]); lps[:3, 3] = [1.5 * 31, 1.5 * 31, 0]
nib.save(nib.Nifti1Image(lab[::-1, ::-1, :].copy(), lps), "cn_label_lps.nii.gz")
torch.save(c["noise"].clone(), "cn_noise.pt")
f = torch.load(f"{F}/controlnet_maisi.pt")
del f["controlnet_state_dict"]["time_embed.0.weight"]
torch.save(f, "cn_partial.pt")
f = torch.load(f"{F}/controlnet_maisi.pt")  # a weight neither it nor the U-Net has, an unknown one, a mis-shaped one
del f["controlnet_state_dict"]["controlnet_cond_embedding.conv_out.conv.bias"]
f["controlnet_state_dict"]["controlnet_down_blocks.99.conv.weight"] = torch.zeros(1)
f["controlnet_state_dict"]["controlnet_mid_block.conv.weight"] = torch.zeros(2, 2, 1, 1, 1)
torch.save(f, "cn_bad.pt")
# weights saved from wrapped networks: DistributedDataParallel's "module." and torch.compile's "_orig_mod." on every key
f = torch.load(f"{F}/unet_maisi.pt")
f["unet_state_dict"] = {"module." + k: v for k, v in f["unet_state_dict"].items()}
torch.save(f, "unet_ddp.pt")
torch.save({"module._orig_mod." + k: v for k, v in torch.load(f"{F}/autoencoder_maisi.pt").items()}, "ae_compiled.pt")
torch.save(torch.load(f"{F}/ddim_monai.pt")["noise"].clone(), "ddim_noise.pt")
# the bundle's U-Net as a training checkpoint saves it (weights under "model" beside the optimiser's state), and a file
# with two sets of weights (which one to take is the user's choice)
import shutil
sd = torch.load("bundle/models/model.pt")
shutil.copytree("bundle", "bundle_ckpt")
torch.save({"model": sd, "epoch": 7, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]}}, "bundle_ckpt/models/model.pt")
shutil.copytree("bundle", "bundle_two")
torch.save({"model": sd, "ema": sd, "epoch": 7}, "bundle_two/models/model.pt")
PY

"$M" import maisi --network-config config_network_rflow.json --autoencoder "$F/autoencoder_maisi.pt" --unet "$F/unet_maisi.pt" \
  --controlnet "$F/controlnet_maisi.pt" --guidance 2 --out maisi > maisi.txt || fail "import maisi: $(cat maisi.txt)"
grep -q "wrote maisi/autoencoder.pt and maisi/ldm.pt" maisi.txt || fail "import maisi output: $(cat maisi.txt)"
grep -q "wrote maisi/controlnet.pt" maisi.txt || fail "import maisi --controlnet output: $(cat maisi.txt)"
"$M" import maisi --network-config config_network_rflow.json --autoencoder "$F/autoencoder_maisi.pt" --unet "$F/unet_maisi.pt" \
  --controlnet cn_partial.pt --out cn-partial > /dev/null 2>warn.txt || fail "import a partial ControlNet: $(cat warn.txt)"
grep -q "cn_partial.pt: 1 weight(s) the file lacks taken from the U-Net" warn.txt || fail "no warning on U-Net weights: $(cat warn.txt)"
set +e; "$M" import maisi --network-config config_network_rflow.json --autoencoder "$F/autoencoder_maisi.pt" --unet "$F/unet_maisi.pt" \
  --controlnet cn_bad.pt --out cn-bad 2>err.txt; rc=$?; set -e
[[ $rc == 1 && $(wc -l < err.txt) == 1 && ! -e cn-bad ]] || fail "bad ControlNet: exit $rc, $(cat err.txt)"
for part in "1 missing (controlnet_cond_embedding.conv_out.conv.bias)" "1 unexpected (controlnet_down_blocks.99.conv.weight)" \
            "controlnet_mid_block.conv.weight [2,2,1,1,1] (expected [8,8,1,1,1])"; do
  grep -qF "$part" err.txt || fail "bad ControlNet error lacks '$part': $(cat err.txt)"
done
"$M" import maisi --network-config config_network_rflow.json --autoencoder ae_compiled.pt --unet unet_ddp.pt --out maisi-wrapped \
  > wrapped.txt 2>&1 || fail "import wrapped networks' weights: $(cat wrapped.txt)"
"$M" import monai-bundle bundle --out brats > brats.txt || fail "import monai-bundle: $(cat brats.txt)"
"$M" import monai-bundle bundle_ckpt --out brats-ckpt > ckpt.txt 2>&1 || fail "import a bundle's training checkpoint: $(cat ckpt.txt)"
set +e; "$M" import monai-bundle bundle_two --out brats-two 2>err.txt; rc=$?; set -e
[[ $rc == 1 && $(wc -l < err.txt) == 1 && ! -e brats-two ]] || fail "two state dicts: exit $rc, $(cat err.txt)"
grep -qF "model.pt: holds 2 state dicts ('model', 'ema')" err.txt || fail "two state dicts: $(cat err.txt)"

# Every imported tensor is the source's weight under the current name; the recipes as the sources say.
"$PY" - "$F" <<'PY' || fail "imported tensors"
import json, sys, torch
F = sys.argv[1]
def check(ckpt, prefix, src, rename=lambda k: k):
    c = torch.load(ckpt)
    got = {k[len(prefix) + 1:]: v for k, v in c["state_dict"].items() if k.startswith(prefix + ".")}
    want = {rename(k): v for k, v in src.items()}
    assert set(got) == set(want), (ckpt, sorted(set(got) ^ set(want))[:5])
    for k in want:
        assert torch.equal(got[k], want[k]), (ckpt, k)
    return json.loads(c["config"])
def maisi_ae(k):  # MAISI's convolutions sit one module deeper; its upsampling convolution is MONAI's postconv
    if k.startswith("decoder.") and ".conv.conv.conv." in k:
        return k.replace(".conv.conv.conv.", ".postconv.conv.", 1)
    return k.replace(".conv.conv.", ".conv.", 1)
check("maisi/autoencoder.pt", "autoencoder", torch.load(f"{F}/autoencoder_maisi.pt"), maisi_ae)
cfg = check("maisi/ldm.pt", "unet", torch.load(f"{F}/unet_maisi.pt")["unet_state_dict"])
check("maisi-wrapped/autoencoder.pt", "autoencoder", torch.load(f"{F}/autoencoder_maisi.pt"), maisi_ae)
check("maisi-wrapped/ldm.pt", "unet", torch.load(f"{F}/unet_maisi.pt")["unet_state_dict"])
r = cfg["recipe"]
assert r["scheduler"] == "rflow-maisi" and r["steps"] == 30 and r["guidance"] == 2, r
assert abs(r["scale_factor"] - 1.0549) < 1e-6, r
assert cfg["network"]["in_channels"] == 4, cfg["network"]  # "@latent_channels" resolved
cn = check("maisi/controlnet.pt", "controlnet", torch.load(f"{F}/controlnet_maisi.pt")["controlnet_state_dict"])
assert cn["network"]["conditioning_embedding_in_channels"] == 8, cn
c = torch.load("cn-partial/controlnet.pt")["state_dict"]
assert torch.equal(c["controlnet.time_embed.0.weight"], torch.load(f"{F}/unet_maisi.pt")["unet_state_dict"]["time_embed.0.weight"])
check("brats/autoencoder.pt", "autoencoder", torch.load(f"{F}/autoencoder_kl.pt"))
cfg = check("brats/ldm.pt", "unet", torch.load(f"{F}/unet_monai.pt"))
check("brats-ckpt/ldm.pt", "unet", torch.load(f"{F}/unet_monai.pt"))
assert cfg["recipe"]["scheduler"] == "ddim" and cfg["recipe"]["steps"] == 50 and cfg["recipe"]["beta_schedule"] == "scaled_linear_beta"
assert cfg["recipe"]["timesteps"] == "monai", cfg["recipe"]
PY

# Fine-tuning an imported autoencoder: train-vqgan --init takes MAISI's architecture and weights (a learning rate too
# small to move them: the first checkpoint still holds them) and records the source.
"$M" phantoms --modality ct --count 4 --shape 16,16,16 --out ph > /dev/null
"$M" train-vqgan --init maisi/autoencoder.pt --set data.manifest=ph/manifest.json --set data.shape=[16,16,16] \
  --set vqgan_train.steps=1 --set vqgan_train.lr=1e-12 --set vqgan_train.device=cpu --set vqgan.disc_channels=4 \
  --set vqgan.disc_layers=2 --set ldm.unet.channel_mults=[1,2] --set ldm.unet.downsample=[[2,2,2]] --set ldm.unet.attention_levels=[1] \
  --out ft > ft.txt 2>&1 || fail "train-vqgan --init: $(tail -3 ft.txt)"
grep -q "training its architecture (kl autoencoder)" ft.txt || fail "--init did not take the imported architecture: $(cat ft.txt)"
"$PY" - <<'PY' || fail "fine-tuning start"
import json, torch
a, b = torch.load("maisi/autoencoder.pt"), torch.load("ft/last.pt")
assert b["kind"] == "kl-autoencoder", b["kind"]
w = {k: v for k, v in a["state_dict"].items() if k.startswith("autoencoder.")}
assert w and all(torch.allclose(v, b["state_dict"][k], rtol=0, atol=1e-8) for k, v in w.items())
assert json.loads(b["extra"])["init"]["imported"] is True, b["extra"]
PY

# Fine-tuning an imported U-Net: train-ldm --init fine-tunes MAISI's rectified-flow U-Net (and a bundle's DDIM U-Net) on
# meddiff's phantoms; the result keeps the source's network and recipe, moves its weights, resumes exactly and samples
# as the imported model does.
"$M" phantoms --modality ct --count 3 --shape 32,32,32 --out ph32 > /dev/null
FT=(--set data.manifest=ph32/manifest.json --set data.modality='"ct"' --set data.shape=[32,32,32] --set ldm_train.batch_size=2
    --set ldm_train.warmup=1 --set ldm_train.lr=1e-3 --set ldm_train.ckpt_every=2 --set ldm_train.log_every=1 --set ldm_train.device='"cpu"')
"$M" train-ldm --init maisi/ldm.pt "${FT[@]}" --set ldm_train.steps=4 --out ftl > ftl.txt 2>&1 || fail "train-ldm --init: $(tail -3 ftl.txt)"
grep -q "MAISI's rectified flow, L1 on the velocity" ftl.txt || fail "fine-tuning rule: $(cat ftl.txt)"
"$M" train-ldm --init maisi/ldm.pt "${FT[@]}" --set ldm_train.steps=2 --out ftr > /dev/null 2>&1 || fail "train-ldm --init (2 steps)"
"$M" train-ldm --init maisi/ldm.pt "${FT[@]}" --set ldm_train.steps=4 --out ftr --resume > ftr.txt 2>&1 || fail "resume: $(tail -3 ftr.txt)"
"$M" sample --ldm ftl/last.pt --shape 32,32,32 --spacing 1,1,1 --modality-class 1 --force -n 1 --steps 3 --device cpu --out ftl_s \
  > ftl_s.txt 2>&1 || fail "sampling the fine-tuned model: $(tail -3 ftl_s.txt)"
"$PY" - <<'PY' || fail "fine-tuned MAISI U-Net"
import hashlib, json, torch
a, b, r = torch.load("maisi/ldm.pt"), torch.load("ftl/last.pt"), torch.load("ftr/last.pt")
assert b["kind"] == "monai-unet" and b["step"] == 4, (b["kind"], b["step"])
ca, cb = json.loads(a["config"]), json.loads(b["config"])
assert ca["network"] == cb["network"] and ca["recipe"] == cb["recipe"] and cb["family"] == "maisi"
ua = {k: v for k, v in a["state_dict"].items() if k.startswith("unet.")}
ub = {k: v for k, v in b["state_dict"].items() if k.startswith("unet.")}
assert set(ua) == set(ub) and all(ua[k].shape == ub[k].shape for k in ua)
moved = sum(not torch.equal(ua[k], ub[k]) for k in ua)
assert moved > len(ua) // 2, f"only {moved} of {len(ua)} tensors moved"
# a run resumed at step 2 ends where the uninterrupted one does
assert all(torch.equal(ub[k], r["state_dict"][k]) for k in ub), "resumed weights differ"
la = [json.loads(l)["loss"] for l in open("ftl/metrics.jsonl")]
lr = [json.loads(l)["loss"] for l in open("ftr/metrics.jsonl")]
assert la == lr, (la, lr)
src = json.loads(b["extra"])["fine_tuned_from"]
assert src["sha256"] == hashlib.sha256(open("maisi/ldm.pt", "rb").read()).hexdigest(), src
assert open("ftl/autoencoder.pt", "rb").read() == open("maisi/autoencoder.pt", "rb").read()
PY
grep -q "1 volume(s) written" ftl_s.txt || fail "fine-tuned samples: $(cat ftl_s.txt)"
"$M" phantoms --count 2 --shape 32,32,32 --out phmr > /dev/null
"$M" train-ldm --init brats/ldm.pt --set data.manifest=phmr/manifest.json --set data.modality='"mr"' --set data.shape=[32,32,32] \
  --set ldm_train.steps=2 --set ldm_train.device='"cpu"' --out ftb > ftb.txt 2>&1 || fail "train-ldm --init (bundle): $(tail -3 ftb.txt)"
grep -q "ddim on its beta schedule, mean squared error" ftb.txt || fail "bundle fine-tuning rule: $(cat ftb.txt)"
set +e; "$M" train-ldm --init maisi/ldm.pt --set data.manifest=phmr/manifest.json --set data.modality='"mr"' --set data.shape=[32,32,32] \
  --out ftm 2>err.txt; rc=$?; set -e
[[ $rc == 1 ]] && grep -q "modality-class" err.txt || fail "MR without a modality code: exit $rc, $(cat err.txt)"
set +e; "$M" train-ldm --init maisi/ldm.pt --vqgan maisi/autoencoder.pt "${FT[@]}" --out ftv 2>err.txt; rc=$?; set -e
[[ $rc == 2 ]] && grep -q "leave out --vqgan" err.txt || fail "--init with --vqgan: exit $rc, $(cat err.txt)"
[[ ! -e ftm/last.pt && ! -e ftv/last.pt ]] || fail "a checkpoint after a refused start"

# Reconstructing with an imported autoencoder: a CT in HU and an MR, each stored as RAS and in another orientation
# (sagittal-like P,S,L axes), give MONAI's reconstruction of MAISI's preprocessing (tests/fixtures/monai/
# autoencoder_maisi_recon.pt) in the input's own geometry: the network sees the RAS array whatever the file's layout.
"$PY" - "$F" <<'PY'
import sys, torch, nibabel as nib, numpy as np
r = torch.load(f"{sys.argv[1]}/autoencoder_maisi_recon.pt")
A = np.diag([1.5, 1.5, 2.0, 1.0]); A[:3, 3] = [-8, 12, 30]
for name in ("ct", "mr"):
    img = nib.Nifti1Image(r[name].numpy().astype(np.float32), A)
    nib.save(img, f"{name}_ras.nii.gz")
    t = nib.orientations.ornt_transform(nib.io_orientation(A), nib.orientations.axcodes2ornt(("P", "S", "L")))
    nib.save(img.as_reoriented(t), f"{name}_psl.nii.gz")
PY
set +e; "$M" reconstruct --vqgan maisi/autoencoder.pt ct_ras.nii.gz rec.nii.gz 2>err.txt; rc=$?; set -e
[[ $rc == 1 && $(wc -l < err.txt) == 1 ]] && grep -q "brought in by meddiff import" err.txt || fail "reconstruct without --modality: exit $rc, $(cat err.txt)"
for m in ct mr; do
  for o in ras psl; do
    "$M" reconstruct --vqgan maisi/autoencoder.pt --modality $m ${m}_$o.nii.gz rec_${m}_$o.nii.gz > rec_${m}_$o.txt 2>&1 ||
      fail "reconstruct $m $o: $(cat rec_${m}_$o.txt)"
    grep -q "PSNR .* dB, SSIM .*imported MAISI KL autoencoder" rec_${m}_$o.txt || fail "reconstruct output: $(cat rec_${m}_$o.txt)"
  done
done
"$PY" - "$F" <<'PY' || fail "reconstruction differs from MONAI's"
import sys, torch, nibabel as nib, numpy as np
r = torch.load(f"{sys.argv[1]}/autoencoder_maisi_recon.pt")
mr = r["mr"].double().numpy()
lo, hi = np.percentile(mr, [0, 99.5])
want = {"ct": np.clip(r["ct_recon"].double().numpy(), 0, 1) * 2000 - 1000,  # MAISI's CT range back in HU
        "mr": np.clip(r["mr_recon"].double().numpy(), 0, 1) * (hi - lo) + lo}  # the MR percentile window back
for name in ("ct", "mr"):
    for o in ("ras", "psl"):
        src, out = nib.load(f"{name}_{o}.nii.gz"), nib.load(f"rec_{name}_{o}.nii.gz")
        assert np.allclose(src.affine, out.affine, atol=1e-4), (name, o, src.affine, out.affine)
        got = nib.as_closest_canonical(out).get_fdata()
        d = np.abs(got - want[name]).max()
        assert d <= 0.51, (name, o, d)  # meddiff writes integers: within rounding of MONAI's values
        print(f"reconstruct {name} {o}: max |meddiff - MONAI| {d:.3f}")
PY

# Evaluating with an imported autoencoder: --modality scales volumes as MAISI does and the network sees RAS arrays, so the
# same phantoms stored as RAS and as P,S,L give the same latent features (Fréchet distance 0; without the RAS layout they
# would be transposed anatomy), and the per-label medians come back in HU as nibabel reads them from the files.
"$PY" - <<'PY'
import os, nibabel as nib, numpy as np
for o in ("ras", "psl"):
    os.makedirs(f"ev_{o}", exist_ok=True)
for i in range(3):
    for kind, suffix in (("images", ""), ("labels", "_label")):
        img = nib.load(f"ph/{kind}/case_{i:04d}.nii.gz")
        ras = nib.as_closest_canonical(img)
        nib.save(ras, f"ev_ras/case_{i}{suffix}.nii.gz")
        t = nib.orientations.ornt_transform(nib.io_orientation(ras.affine), nib.orientations.axcodes2ornt(("P", "S", "L")))
        nib.save(ras.as_reoriented(t), f"ev_psl/case_{i}{suffix}.nii.gz")
PY
set +e; "$M" eval --real ev_ras --synthetic ev_psl --vqgan maisi/autoencoder.pt --device cpu --out ev_no 2>err.txt; rc=$?; set -e
[[ $rc == 1 && $(wc -l < err.txt) == 1 ]] && grep -q "give --modality ct or mr" err.txt || fail "eval without --modality: exit $rc, $(cat err.txt)"
set +e; "$M" eval --real ev_ras --synthetic ev_psl --vqgan maisi/autoencoder.pt --modality ct --shape 16,16,18 --device cpu --out ev_no 2>err.txt; rc=$?; set -e
[[ $rc == 2 ]] && grep -q -- "--shape 16,16,18: each size must be a multiple of 4" err.txt || fail "eval --shape 18: exit $rc, $(cat err.txt)"
set +e; "$M" eval --real ev_ras --synthetic ev_psl --vqgan ft/last.pt --shape 16,16,16 --device cpu --out ev_no 2>err.txt; rc=$?; set -e
[[ $rc == 2 ]] && grep -q -- "--shape and --spacing are for an imported autoencoder" err.txt || fail "eval --shape, trained: exit $rc, $(cat err.txt)"
"$M" eval --real ev_ras --synthetic ev_psl --train ph --vqgan maisi/autoencoder.pt --modality ct --device cpu --out ev_imp > ev_imp.txt 2>&1 ||
  fail "eval with the imported autoencoder: $(tail -3 ev_imp.txt)"
"$PY" - <<'PY' || fail "eval with the imported autoencoder"
import json, nibabel as nib, numpy as np
j = json.load(open("ev_imp/eval.json"))
assert j["inputs"]["imported"] == "maisi" and "16 x 16 x 16 grid" in j["settings"]["normalisation"], j["settings"]
fd = j["fidelity"]["frechet_distance"]
assert abs(fd) < 1e-6, fd
for row in j["labels"]["table"]:
    meds = []
    for i in range(3):
        x = np.clip(nib.load(f"ev_psl/case_{i}.nii.gz").get_fdata(), -1000, 1000)
        lab = np.rint(nib.load(f"ev_psl/case_{i}_label.nii.gz").get_fdata()).astype(int)
        if (lab == row["label"]).any():
            meds.append(np.percentile(x[lab == row["label"]], 50, method="lower"))  # torch's median: the lower middle
    d = abs(row["synthetic"]["median_mean"] - np.mean(meds))
    assert d < 0.05, (row, meds)
    print(f"eval, imported autoencoder: label {row['label']} median {row['synthetic']['median_mean']:.2f} HU, nibabel {np.mean(meds):.2f}")
print(f"eval, imported autoencoder: Fréchet distance RAS vs P,S,L copies {fd:.2e}")
PY

# Sampling the imported models from the noise MONAI started from gives MONAI's volumes (tests/fixtures/monai: a 5-step
# MAISI rflow run at spacing 1.5,1.5,2 mm with modality 1, guided (2) and not; a 10-step DDIM run of the bundle), in
# MAISI's HU mapping and NIfTI geometry (affine diag(spacing), no translation). A size outside MAISI's documented
# ranges is one line without --force.
set +e; "$M" sample --ldm maisi/ldm.pt --shape 32,32,32 --spacing 1.5,1.5,2 --modality-class 1 --out s-refused 2>err.txt; rc=$?; set -e
[[ $rc == 1 && $(wc -l < err.txt) == 1 ]] && grep -q "MAISI documents CT outputs" err.txt || fail "range check: exit $rc, $(cat err.txt)"
[[ ! -e s-refused/synth_000000.nii.gz ]] || fail "a refused job wrote a volume"
set +e; "$M" sample --ldm maisi/ldm.pt --shape 32,32,32 --spacing 1.5,1.5,2 --out s-refused 2>err.txt; rc=$?; set -e
[[ $rc == 1 ]] && grep -q "modality-class" err.txt || fail "no modality code: exit $rc, $(cat err.txt)"
set +e; "$M" sample --ldm maisi/ldm.pt --shape 30,32,32 --spacing 1.5,1.5,2 --modality-class 1 --force --out s-refused 2>err.txt; rc=$?; set -e
[[ $rc == 1 ]] && grep -q "multiple of 32" err.txt || fail "shape not a multiple: exit $rc, $(cat err.txt)"
for g in 2 1; do
  "$M" sample --ldm maisi/ldm.pt --shape 32,32,32 --spacing 1.5,1.5,2 --modality-class 1 --steps 5 --guidance $g \
    --initial-noise maisi_noise.pt --force --out "maisi-g$g" 2>/dev/null || fail "sample maisi guidance $g"
done
# Images from label maps with MAISI's ControlNet: the recipe's guidance (2 here) is refused, as MAISI's guided variant
# needs a tumour-free map; the RAS and the LPS map give MONAI's image, on the map's own grid, with the map beside it.
set +e; "$M" sample --ldm maisi/ldm.pt --labels cn_label_ras.nii.gz --shape 32,32,32 --spacing 1.5,1.5,2 --modality-class 1 \
  --force --out s-refused 2>err.txt; rc=$?; set -e
[[ $rc == 2 ]] && grep -q "guidance 2" err.txt || fail "ControlNet with guidance: exit $rc, $(cat err.txt)"
set +e; "$M" sample --ldm brats/ldm.pt --labels cn_label_ras.nii.gz --shape 32,32,16 --spacing 1,1,1 --out s-refused 2>err.txt; rc=$?; set -e
[[ $rc == 1 ]] && grep -q "no ControlNet beside it" err.txt || fail "--labels without a ControlNet: exit $rc, $(cat err.txt)"
for o in ras lps; do
  "$M" sample --ldm maisi/ldm.pt --labels cn_label_$o.nii.gz --shape 32,32,32 --spacing 1.5,1.5,2 --modality-class 1 --steps 3 \
    --guidance 1 --initial-noise cn_noise.pt --force --out maisi-cn-$o 2>cn_$o.txt || fail "sample with the ControlNet ($o): $(tail -3 cn_$o.txt)"
done
"$M" sample --ldm brats/ldm.pt --shape 32,32,16 --spacing 1,1,1 --steps 10 --initial-noise ddim_noise.pt --out bundle-ddim 2>/dev/null ||
  fail "sample bundle"
"$PY" - "$F" <<'PY' || fail "imported sampling differs from MONAI's"
import json, sys, torch, nibabel as nib, numpy as np
F = sys.argv[1]
r = torch.load(f"{F}/rflow_maisi.pt")
for key, folder in (("image_cfg", "maisi-g2"), ("image_plain", "maisi-g1")):
    img = nib.load(f"{folder}/synth_000000.nii.gz")
    assert np.allclose(img.affine, np.diag([1.5, 1.5, 2.0, 1.0])), img.affine
    want = np.clip(r[key][0, 0].double().numpy() * 2000 - 1000, -1000, 1000)  # NV-Generate-CTMR's CT mapping
    d = np.abs(img.get_fdata() - want).max()
    assert d <= 0.51, (folder, d)  # meddiff rounds to the nearest HU where MAISI truncates: within 1 HU of MAISI's file
    side = json.load(open(f"{folder}/synth_000000.json"))
    assert side["synthetic"] and side["modality"] == "CT" and side["modality_class"] == 1 and side["spacing"] == [1.5, 1.5, 2.0], side
    print(f"{folder}: max |meddiff - MONAI| {d:.3f} HU")
c = torch.load(f"{F}/controlnet_rflow.pt")
want = c["image"].double().numpy()
for o in ("ras", "lps"):
    img = nib.as_closest_canonical(nib.load(f"maisi-cn-{o}/synth_000000.nii.gz"))
    lab = nib.as_closest_canonical(nib.load(f"maisi-cn-{o}/synth_000000_label.nii.gz"))
    assert np.allclose(img.affine, nib.as_closest_canonical(nib.load(f"cn_label_{o}.nii.gz")).affine, atol=1e-4), (o, img.affine)
    assert np.array_equal(np.asarray(lab.dataobj).astype(np.int64), c["label"].numpy()), o
    d = np.abs(img.get_fdata() - want).max()
    assert d <= 0.51, (o, d)
    assert (img.get_fdata()[c["label"].numpy() == 0] == -1000).all()
    side = json.load(open(f"maisi-cn-{o}/synth_000000.json"))
    assert side["synthetic"] and side["label_map"]["map"] == f"cn_label_{o}.nii.gz", side
    print(f"maisi-cn-{o}: max |meddiff - MONAI| {d:.3f} HU over {want.min():.0f}..{want.max():.0f}")
d = torch.load(f"{F}/ddim_monai.pt")
img = nib.load("bundle-ddim/synth_000000.nii.gz")
want = np.maximum(d["image"][0, 0].double().numpy() * 1000, 0)  # NV-Generate-CTMR's MR mapping: x * 1000, kept >= 0 only
inside = want > 1
assert inside.sum() > 1000, inside.sum()
diff = np.abs(img.get_fdata() - want).max()
assert diff <= 0.51, diff
print(f"bundle-ddim: max |meddiff - MONAI| {diff:.3f} (MR units of 1000), {inside.sum()} voxels above 0, {(want > 1000).sum()} above 1000")
PY

# Weights that do not fit: one line listing them, exit 1, nothing written.
set +e; "$M" import maisi --network-config config_network_rflow.json --autoencoder "$F/autoencoder_maisi.pt" --unet bad_unet.pt \
  --out bad 2>err.txt; rc=$?; set -e
[[ $rc == 1 && $(wc -l < err.txt) == 1 ]] || fail "bad U-Net: exit $rc, $(cat err.txt)"
for part in "1 missing (conv_in.conv.bias)" "1 unexpected (down_blocks.9.resnets.0.norm1.weight)" \
            "time_embed.0.weight [3,3] (expected [16,4])"; do
  grep -qF "$part" err.txt || fail "bad U-Net error lacks '$part': $(cat err.txt)"
done
[[ ! -e bad ]] || fail "a failed import left $(ls bad)"
# Unused weights: imported, with a warning naming them.
"$M" import maisi --network-config config_network_rflow.json --autoencoder "$F/autoencoder_maisi.pt" --unet unet_with_unused.pt \
  --out unused > /dev/null 2>warn.txt || fail "unused out_proj: $(cat warn.txt)"
grep -q "1 weight(s) the network does not use.*down_blocks.2.attentions.0.attn.out_proj.weight" warn.txt || fail "no warning: $(cat warn.txt)"
# An existing import is not replaced without --force; a missing file is named.
set +e; "$M" import monai-bundle bundle --out brats 2>err.txt; rc=$?; set -e
[[ $rc == 1 ]] && grep -q "brats" err.txt || fail "existing --out: exit $rc, $(cat err.txt)"
set +e; "$M" import monai-bundle nowhere --out x 2>err.txt; rc=$?; set -e
[[ $rc == 1 ]] && grep -q "nowhere" err.txt || fail "missing bundle: exit $rc, $(cat err.txt)"
echo "import: ok"
