#!/usr/bin/env bash
# End to end: datasets as users keep them (tests/fixtures/datasets, written by nibabel and pydicom), through
# `meddiff index` and into training. Usage: datasets.sh MEDDIFF SOURCE_DIR WORKDIR
set -euo pipefail
M=$1; SRC=$2; W=$3
rm -rf "$W"; mkdir -p "$W"; cd "$W"
fail() { echo "FAIL: $*"; exit 1; }
D=$SRC/tests/fixtures/datasets

# the table: layout, channels, one line per case left out
"$M" index "$D/BraTS2021_tiny" > brats.txt
grep -q "BraTS layout, 2 case(s), 4 channel(s) (t1, t1ce, t2, flair)" brats.txt || fail "BraTS table: $(cat brats.txt)"
grep -q "left out: .*BraTS2021_00001: case left out: no \*_t2 file" brats.txt || fail "BraTS problem line: $(cat brats.txt)"
"$M" index "$D/dicom_tree" > tree.txt 2>/dev/null
grep -q "DICOM tree layout, 3 case(s)" tree.txt || fail "DICOM tree table: $(cat tree.txt)"
[[ $(grep -c "^series left out:" tree.txt) == 2 ]] || fail "DICOM series left out: $(cat tree.txt)"
grep -q "^unreadable DICOM file: .*broken.dcm" tree.txt || fail "unreadable DICOM file: $(cat tree.txt)"
grep -q "README" tree.txt && fail "a text file is reported: $(cat tree.txt)"

# --out: a manifest that training reads; --strict refuses and writes nothing
"$M" index "$D/Task01_Tiny" --out msd.json > /dev/null
python3 - <<'PY' || fail "MSD manifest"
import json
m = json.load(open("msd.json"))
assert m["layout"] == "MSD" and m["channel_names"] == ["FLAIR", "T1w", "t1gd", "T2w"], m
assert [c["id"] for c in m["cases"]] == ["BRATS_001", "BRATS_002"], m["cases"]
assert [ch["component"] for ch in m["cases"][0]["channels"]] == [0, 1, 2, 3], m["cases"][0]
PY
"$M" index "$D/Task01_Tiny" --json > msd-index.json 2>/dev/null
python3 - <<'PY' || fail "index --json"
import json
j = json.load(open("msd-index.json"))
m = j["manifest"]
assert m["layout"] == "MSD" and [c["id"] for c in m["cases"]] == ["BRATS_001", "BRATS_002"], m
assert len(j["problems"]) == 1 and "BRATS_003" in j["problems"][0], j["problems"]
PY
set +e; "$M" index "$D/BraTS2021_tiny" --strict --out strict.json > /dev/null 2>err.txt; rc=$?; set -e
[[ $rc == 1 && ! -e strict.json ]] || fail "--strict: exit $rc, $(ls)"
set +e; "$M" index "$D/no-such-dataset" 2>err.txt; rc=$?; set -e
[[ $rc == 1 && $(wc -l < err.txt) == 1 ]] && grep -q "no-such-dataset" err.txt || fail "missing source: exit $rc, $(cat err.txt)"

# training: every channel of a multi-channel dataset without data.channels; the one data.channels names with it
TINY=(--set data.shape=[16,16,16] --set vqgan_train.steps=2 --set data.val_fraction=0 --set vqgan.n_hiddens=4
      --set vqgan.downsample=[2,2,2] --set vqgan_train.batch_size=1)
"$M" train-vqgan --set data.manifest='"msd.json"' "${TINY[@]}" --out run-all > all.txt 2>&1 || fail "train on every MSD channel: $(tail -3 all.txt)"
grep -q "x 4 channels (FLAIR, T1w, t1gd, T2w)" all.txt || fail "4 channels: $(cat all.txt)"
# stage 2 with other channels than the VQ-GAN's is refused naming both
set +e; "$M" train-ldm --set data.manifest='"msd.json"' --set 'data.channels=["t1gd"]' --set data.shape=[16,16,16] --vqgan run-all/last.pt \
  --out ldm-bad 2>err.txt; rc=$?; set -e
[[ $rc == 1 ]] && grep -q "data.channels" err.txt && grep -q "FLAIR, T1w, t1gd, T2w" err.txt || fail "channels unlike the VQ-GAN's: exit $rc, $(cat err.txt)"
"$M" train-vqgan --set data.manifest='"msd.json"' --set 'data.channels=["t1gd"]' "${TINY[@]}" --out run-msd > train.txt 2>&1 \
  || fail "train on one MSD channel: $(tail -3 train.txt)"
[[ -f run-msd/last.pt ]] || fail "no checkpoint"
# label-conditioned stage 2 on the MSD set: the label names come from its dataset.json
"$M" train-ldm --set data.manifest='"msd.json"' --set 'data.channels=["t1gd"]' --set data.labels='"condition"' \
  --set data.shape=[16,16,16] --set data.val_fraction=0 --set ldm_train.steps=2 --vqgan run-msd/last.pt --out ldm-msd > ldm.txt 2>&1 \
  || fail "label-conditioned train-ldm on MSD: $(tail -3 ldm.txt)"
"$M" info ldm-msd/last.pt > ldm-info.json
python3 - <<'PY' || fail "label names of the MSD model"
import json
c = json.load(open("ldm-info.json"))["config"]
assert c["data"]["label_names"] == ["background", "edema", "tumour"], c["data"]["label_names"]
PY
# eval reads an indexed multi-channel set with the VQ-GAN's channel (t1gd): the same cases give distance 0
"$M" eval --real msd.json --synthetic msd.json --vqgan run-msd/last.pt --pairs 1 --out ev > eval.txt 2>&1 || fail "eval: $(tail -3 eval.txt)"
python3 - <<'PY' || fail "eval of an MSD manifest"
import json
j = json.load(open("ev/eval.json"))
assert j["counts"]["real"] == 2 and j["counts"]["synthetic"] == 2, j["counts"]
assert abs(j["fidelity"]["frechet_distance"]) < 1e-6, j["fidelity"]
PY
# a BraTS folder with a broken case: refused before training, naming the case and `meddiff index`
set +e; "$M" train-vqgan --set data.manifest="\"$D/BraTS2021_tiny\"" --set 'data.channels=["flair"]' "${TINY[@]}" --out run-brats 2>err.txt; rc=$?; set -e
[[ $rc == 1 ]] && grep -q "BraTS2021_00001" err.txt && grep -q "meddiff index" err.txt || fail "BraTS problem: exit $rc, $(cat err.txt)"
[[ ! -e run-brats/last.pt ]] || fail "a checkpoint after a refused start"
# a DICOM tree trains on the series of data.modality (the CT one)
"$M" train-vqgan --set data.manifest="\"$D/dicom_tree\"" --set data.modality='"ct"' "${TINY[@]}" --out run-dicom > dicom.txt 2>&1 \
  || fail "train on a DICOM tree: $(tail -3 dicom.txt)"
grep -q "1 training and 0 validation volumes" dicom.txt || fail "DICOM tree cases: $(grep volumes dicom.txt)"
# meddiff phantoms in each layout, read back by meddiff index
"$M" phantoms --layout brats --count 4 --shape 16,16,12 --out pb > /dev/null 2>&1 || fail "phantoms --layout brats"
"$M" index pb --set data.source.classes='"pb/classes.csv"' --out pb.json > pb.txt 2>&1
grep -q "BraTS layout, 4 case(s), 4 channel(s) (t1, t1ce, t2, flair)" pb.txt || fail "BraTS phantoms: $(cat pb.txt)"
"$M" phantoms --layout nnunet --sequences t1ce,flair --count 3 --shape 16,16,12 --out Dataset950_P > /dev/null 2>&1 || fail "phantoms --layout nnunet"
"$M" index Dataset950_P --out pn.json > pn.txt 2>&1
grep -q "nnU-Net raw layout, 3 case(s), 2 channel(s) (t1ce, flair)" pn.txt || fail "nnU-Net phantoms: $(cat pn.txt)"
"$M" phantoms --layout msd --count 3 --shape 16,16,12 --out Task09_P > /dev/null 2>&1 || fail "phantoms --layout msd"
"$M" index Task09_P --out pm.json > pm.txt 2>&1
grep -q "MSD layout, 3 case(s), 4 channel(s) (t1, t1ce, t2, flair)" pm.txt || fail "MSD phantoms: $(cat pm.txt)"
python3 - <<'PY' || fail "phantom manifests"
import json
b, n, m = (json.load(open(f)) for f in ("pb.json", "pn.json", "pm.json"))
assert [c["class"] for c in b["cases"]] == [0, 1, 0, 1], b["cases"]
assert all(c.get("label") for c in b["cases"] + n["cases"] + m["cases"]), "a case without its label map"
assert n["label_names"] == ["background", "skull", "brain", "ventricles", "lesion"], n["label_names"]
assert [ch["component"] for ch in m["cases"][2]["channels"]] == [0, 1, 2, 3], m["cases"][2]
PY
"$M" phantoms --modality ct --layout dicom-tree --count 2 --shape 16,16,24 --out pt > /dev/null 2>&1 || fail "phantoms --layout dicom-tree"
"$M" index pt --set data.modality='"ct"' > pt.txt 2>&1
grep -q "DICOM tree layout, 3 case(s)" pt.txt || fail "DICOM tree phantoms (2 scans and a second reconstruction): $(cat pt.txt)"
[[ $(grep -c "^series left out: .*localiser" pt.txt) == 2 && $(grep -c "^series left out: .*secondary capture" pt.txt) == 1 ]] \
  || fail "DICOM decoys: $(cat pt.txt)"
grep -q "README" pt.txt && fail "the stray text file is reported: $(cat pt.txt)"
"$M" index pt --set data.modality='"ct"' --set data.source.dicom.per_study='"most_slices"' > pt2.txt 2>&1
grep -q "DICOM tree layout, 2 case(s)" pt2.txt && grep -q "series_9_recon.*not the" pt2.txt || fail "one series per study: $(cat pt2.txt)"
# the preprocessed dataset cache: built by the first run, mapped by the next (stage 1 and 2), one changed case rebuilt
"$M" phantoms --count 6 --shape 16,16,16 --out ph > /dev/null 2>&1
PH=(--set data.manifest='"ph/manifest.json"' "${TINY[@]}")
"$M" train-vqgan "${PH[@]}" --cache cache --out c1 > c1.txt 2>&1 || fail "cache build: $(tail -3 c1.txt)"
grep -q "building the dataset cache in cache/v2-" c1.txt || fail "cache build message: $(cat c1.txt)"
"$M" train-vqgan "${PH[@]}" --cache cache --out c2 > c2.txt 2>&1 || fail "cached run: $(tail -3 c2.txt)"
grep -q "6 preprocessed case(s) from the cache" c2.txt && ! grep -q "^preprocessing" c2.txt || fail "cached run message: $(cat c2.txt)"
"$M" train-ldm --set data.manifest='"ph/manifest.json"' --set data.shape=[16,16,16] --set ldm_train.steps=2 --vqgan c1/last.pt \
  --cache cache --out l1 > l1.txt 2>&1 || fail "train-ldm from the cache: $(tail -3 l1.txt)"
grep -q "from the cache" l1.txt || fail "train-ldm did not map the cache: $(cat l1.txt)"
touch -d "2001-01-01" ph/images/case_0002.nii.gz
"$M" train-vqgan "${PH[@]}" --cache cache --out c3 > c3.txt 2>&1 || fail "changed case: $(tail -3 c3.txt)"
grep -q "1 of 6 cases are new or their files changed" c3.txt || fail "changed case message: $(cat c3.txt)"
[[ $(ls -d cache/v2-* | wc -l) == 1 ]] || fail "superseded cache left: $(ls cache)"
# patch training: 8^3 patches of the 16^3 volumes; validation and the checkpoint on whole volumes
"$M" train-vqgan "${PH[@]}" --set vqgan_train.patch=[8,8,8] --set data.val_fraction=0.2 --cache cache --out p1 > p1.txt 2>&1 \
  || fail "patch training: $(tail -3 p1.txt)"
grep -q '"val_psnr"' p1/metrics.jsonl || fail "no validation on whole volumes: $(tail -2 p1/metrics.jsonl)"
set +e; "$M" train-vqgan "${PH[@]}" --set vqgan_train.patch=[8,8,5] --out p2 2>err.txt; rc=$?; set -e
[[ $rc == 1 ]] && grep -q "vqgan_train.patch" err.txt || fail "a patch the downsampling does not divide: exit $rc, $(cat err.txt)"
echo "e2e datasets: ok"
