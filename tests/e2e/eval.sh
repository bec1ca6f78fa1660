#!/usr/bin/env bash
# `meddiff eval` end to end: planted copies of training volumes (exact, and shifted by 2 voxels with
# noise, written by an independent script) are flagged and fresh volumes are not; an untrained LDM's
# samples are further from the real set than fresh real volumes; the same command twice gives the same
# eval.json; `sample --eval` writes its eval into the sample folder; bad input is refused.
# Usage: eval.sh MEDDIFF SOURCE_DIR WORKDIR
set -euo pipefail
M=$1; SRC=$2; W=$3
rm -rf "$W"; mkdir -p "$W"; cd "$W"
fail() { echo "FAIL: $*"; exit 1; }
q() { "$@" > log.txt 2>&1 || { cat log.txt; fail "$*"; }; }
q "$M" phantoms --modality mr --count 12 --shape 32,32,32 --seed 1 --out data
q "$M" phantoms --modality mr --count 6 --shape 32,32,32 --seed 2 --out heldout
q "$M" phantoms --modality mr --count 4 --shape 32,32,32 --seed 3 --out fresh
q "$M" train-vqgan --config "$SRC/configs/demo-mr.json" --set data.manifest=data/manifest.json --set vqgan_train.steps=20 \
  --set vqgan_train.device='"cpu"' --out vq
q "$M" train-ldm --config "$SRC/configs/demo-mr.json" --set data.manifest=data/manifest.json --set ldm_train.steps=1 \
  --set ldm_train.device='"cpu"' --vqgan vq/last.pt --out ldm0
q "$M" sample --ldm ldm0/last.pt -n 4 --steps 5 --seed 1 --device cpu --out untrained

# the synthetic set: 4 fresh real phantoms, 2 untrained samples and 3 planted copies of training phantoms
mkdir planted
cp fresh/images/case_000{0,1,2,3}.nii.gz planted/
for i in 0 1; do cp untrained/synth_00000$i.nii.gz planted/untrained_$i.nii.gz; done
P="python3 $SRC/tests/e2e/plant_copy.py"
$P data/images/case_0003.nii.gz planted/copy_exact.nii.gz
$P data/images/case_0005.nii.gz planted/copy_shift_noise2.nii.gz --shift 2,-2,1 --noise 0.02 --seed 1
$P data/images/case_0008.nii.gz planted/copy_shift_noise5.nii.gz --shift 0,2,0 --noise 0.05 --seed 2
q "$M" eval --real heldout --synthetic planted --train data --vqgan vq/last.pt --device cpu --out ev1
python3 - ev1/eval.json <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
flagged = sorted(j["memorisation"]["near_copies"])
expect = ["copy_exact.nii.gz", "copy_shift_noise2.nii.gz", "copy_shift_noise5.nii.gz"]
assert flagged == expect, f"near-copies {flagged}, expected {expect}"
by = {v["file"]: v for v in j["memorisation"]["volumes"]}
assert by["copy_exact.nii.gz"]["nearest_train"] == "case_0003.nii.gz" and by["copy_exact.nii.gz"]["ncc"] > 0.9999
assert by["copy_shift_noise2.nii.gz"]["nearest_train"] == "case_0005.nii.gz"
# the plant script shifts along the file's x, y, z; the audit reports [z, y, x] and the way back
assert by["copy_shift_noise2.nii.gz"]["shift"] == [-1, 2, -2], by["copy_shift_noise2.nii.gz"]["shift"]
for k in ("fidelity", "diversity", "intensity", "labels"):
    assert k in j, k
assert abs(sum(j["intensity"]["histogram_real"]) - 1) < 1e-9
print("planted copies flagged, fresh and untrained volumes not:", flagged)
PY
# fidelity: fresh real volumes are closer to the held-out real set than an untrained LDM's samples
mkdir fresh_only && cp fresh/images/*.nii.gz fresh_only/
q "$M" eval --real heldout --synthetic fresh_only --vqgan vq/last.pt --device cpu --out ev_fresh
q "$M" eval --real heldout --synthetic untrained --vqgan vq/last.pt --device cpu --out ev_untrained
python3 - ev_fresh/eval.json ev_untrained/eval.json <<'PY'
import json, sys
f, u = (json.load(open(p)) for p in sys.argv[1:3])
fd_f, fd_u = f["fidelity"]["frechet_distance"], u["fidelity"]["frechet_distance"]
assert fd_f < fd_u, (fd_f, fd_u)
assert f["intensity"]["histogram_intersection"] > u["intensity"]["histogram_intersection"]
print(f"Fréchet distance: fresh real {fd_f:.4f} < untrained LDM {fd_u:.4f}")
PY
# per-class label table: each class's mean of per-volume medians inside each label, as nibabel computes them on
# the MR window the VQ-GAN's data settings give (each volume min..max -> 0..1000)
q "$M" eval --real heldout --synthetic fresh --vqgan vq/last.pt --device cpu --out ev_cls
"$SRC/.venv/bin/python" - ev_cls/eval.json heldout fresh <<'PY'
import json, sys, numpy as np, nibabel as nib
j = json.load(open(sys.argv[1]))
for key, folder in (("real", sys.argv[2]), ("synthetic", sys.argv[3])):
    per = {}
    for c in json.load(open(f"{folder}/manifest.json"))["cases"]:
        a = nib.load(f"{folder}/{c['image']}").get_fdata(); l = np.rint(nib.load(f"{folder}/{c['label']}").get_fdata()).astype(int)
        u = (a - a.min()) / (a.max() - a.min()) * 1000
        for k in range(5):
            if (l == k).sum() >= 8: per.setdefault((c["class"], k), []).append(np.median(u[l == k]))
    by = {e["class"]: e["table"] for e in j["labels"]["by_class"]}
    assert sorted(by) == [0, 1], sorted(by)
    for (cls, k), meds in per.items():
        got = by[cls][k][key]
        assert got["volumes"] == len(meds), (key, cls, k, got["volumes"], len(meds))
        assert abs(got["median_mean"] - np.mean(meds)) < 2.0, (key, cls, k, got["median_mean"], np.mean(meds))
    assert by[0][4][key]["volumes"] == 0  # class 0 phantoms have no lesion
# the edge step of each label: the median of its voxels touching another label minus that of the others touching it
def touches(m):
    p = np.pad(m, 1)
    out = np.zeros_like(m)
    for dz in range(3):
        for dy in range(3):
            for dx in range(3):
                out |= p[dz:dz + m.shape[0], dy:dy + m.shape[1], dx:dx + m.shape[2]]
    return out
for key, folder in (("real", sys.argv[2]), ("synthetic", sys.argv[3])):
    steps, agree = {}, {}
    for c in json.load(open(f"{folder}/manifest.json"))["cases"]:
        a = nib.load(f"{folder}/{c['image']}").get_fdata(); l = np.rint(nib.load(f"{folder}/{c['label']}").get_fdata()).astype(int)
        u = (a - a.min()) / (a.max() - a.min()) * 1000
        for k in range(1, 5):
            m = l == k
            if m.sum() < 8: continue
            inner, outer = m & touches(~m), ~m & touches(m)
            if inner.sum() >= 8 and outer.sum() >= 8:
                # torch's lower median
                lo = lambda v: np.sort(v)[(len(v) - 1) // 2]
                step = lo(u[inner]) - lo(u[outer])
                steps.setdefault(k, []).append(step)
                # edge agreement: Dice of the label with its one-voxel neighbourhood thresholded halfway across the edge
                mid = lo(u[outer]) + step / 2
                side = (u > mid if step >= 0 else u < mid) & (m | outer)
                agree.setdefault(k, []).append(2 * (side & m).sum() / (side.sum() + m.sum()))
    for k, v in steps.items():
        got = j["labels"]["table"][k][key]["edge_step"]
        assert got["volumes"] == len(v) and abs(got["mean"] - np.mean(v)) < 2.0, (key, k, got, np.mean(v))
        got = j["labels"]["table"][k][key]["edge_agreement"]
        assert abs(got["mean"] - np.mean(agree[k])) < 0.02, (key, k, got, np.mean(agree[k]))
    assert steps[3] and np.mean(steps[3]) < 0 and np.mean(steps[4]) > 0  # dark ventricles, bright lesions
print("per-class label medians, edge steps and edge agreements equal nibabel's")
PY
grep -q "^| 1 | 3 / 2 |" ev_cls/report.md || fail "no per-class row in report.md: $(grep -A4 'Per class' ev_cls/report.md)"
# the same command twice: the same JSON
q "$M" eval --real heldout --synthetic planted --train data --vqgan vq/last.pt --device cpu --out ev2
cmp ev1/eval.json ev2/eval.json || fail "two runs gave different eval.json"
# sample --eval: the eval lands in the sample folder, which stays usable
q "$M" sample --ldm ldm0/last.pt -n 4 --steps 5 --seed 1 --device cpu --out untrained --eval heldout
[[ -f untrained/eval/eval.json && -f untrained/eval/report.md && -f untrained/eval/histogram.png ]] || fail "sample --eval wrote no eval"
grep -q "Memorisation audit" untrained/eval/report.md || fail "sample --eval: no audit (the LDM's training data)"
# the training set as --real (a natural mistake) is refused, naming the overlap: the audit would calibrate on
# copies and flag nothing; a copy of a training volume under another name is caught by its voxels
set +e
"$M" eval --real data --synthetic planted --train data --vqgan vq/last.pt --device cpu --out ev_same 2> err.txt; rc=$?
set -e
[[ $rc == 1 && ! -e ev_same/eval.json ]] && grep -q "overlap" err.txt && grep -q "case_0000.nii.gz" err.txt \
  || { cat err.txt; fail "--real = --train accepted"; }
mkdir realcopy && cp heldout/images/case_000{0,1,2}.nii.gz realcopy/ && cp data/images/case_0007.nii.gz realcopy/renamed.nii.gz
set +e
"$M" eval --real realcopy --synthetic planted --train data --vqgan vq/last.pt --device cpu --out ev_copy 2> err.txt; rc=$?
set -e
[[ $rc == 1 ]] && grep -q "renamed.nii.gz has the voxels of the training volume .*case_0007.nii.gz" err.txt \
  || { cat err.txt; fail "a renamed training volume in --real accepted"; }
# a killed or failed eval (PNGs without eval.json, a dead process's temporary) is taken over without --force;
# a finished one needs --force
mkdir ev_killed && cp ev1/closest_1.png ev1/histogram.png ev_killed/ && echo partial > "ev_killed/.closest_2.tmp-$(hostname)-999999-1.png"
q "$M" eval --real heldout --synthetic planted --train data --vqgan vq/last.pt --device cpu --out ev_killed
cmp ev1/eval.json ev_killed/eval.json || fail "the re-run after a kill gave another eval.json"
ls -a ev_killed | grep -q "tmp-" && fail "the killed run's temporary is still there: $(ls -a ev_killed)"
set +e
"$M" eval --real heldout --synthetic planted --vqgan vq/last.pt --device cpu --out ev_killed 2> err.txt; rc=$?
set -e
[[ $rc == 1 ]] && grep -q -- "--force" err.txt || { cat err.txt; fail "a finished eval replaced without --force"; }
# --downstream seg: a segmenter trained on 3 real cases, with and without the held-out phantoms' pairs (here real
# phantoms stand in for synthetic pairs), scored on the held-out phantoms: the table lands in eval.json and report.md
q "$M" eval --real heldout --synthetic fresh --vqgan vq/last.pt --device cpu --downstream seg --seg-train data --seg-cases 3 \
  --seg-iterations 20 --seg-seeds 1 --out ev_seg
python3 - ev_seg/eval.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))["downstream"]
assert d["counts"] == {"real_train": 3, "synthetic": 4, "held_out": 6}, d["counts"]
rows = {r["name"]: r for r in d["labels"]}
for name in ("skull", "brain", "ventricles"):
    r = rows[name]
    assert set(r["dice"]) == {"real", "real+synthetic", "synthetic"}, r["dice"].keys()
    assert 0 <= r["dice"]["real"]["mean"] <= 1 and "gain" in r and r["gain"]["verdict"], r
print("downstream:", d["summary"])
PY
grep -q "## Downstream segmentation" ev_seg/report.md || fail "no downstream table in report.md"
# bad input: one line naming the problem, nothing written
set +e
"$M" eval --real heldout --synthetic planted --vqgan vq/last.pt --features resnet.pt --out bad 2> err.txt; rc=$?
set -e
[[ $rc != 0 && ! -e bad ]] && grep -q -- "--features" err.txt || { cat err.txt; fail "bad --features accepted"; }
set +e
mkdir one && cp fresh/images/case_0000.nii.gz one/
"$M" eval --real heldout --synthetic one --vqgan vq/last.pt --out bad 2> err.txt; rc=$?
set -e
[[ $rc != 0 && ! -e bad ]] && grep -q "at least 2 volumes" err.txt || { cat err.txt; fail "a single synthetic volume accepted"; }
echo "e2e eval: ok"
