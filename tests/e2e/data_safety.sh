#!/usr/bin/env bash
# The data-safety promises, checked with the binary as a user runs it and with independent readers
# (pydicom, nibabel): two identical sampling jobs at once, a killed job resumed, MR DICOM spacing,
# synthetic marking. Usage: data_safety.sh MEDDIFF SOURCE_DIR WORKDIR
set -euo pipefail
M=$1; SRC=$2; W=$3
PY="$SRC/.venv/bin/python"
[[ -x $PY ]] || { echo "no $PY (run scripts/setup.sh)"; exit 1; }
rm -rf "$W"; mkdir -p "$W"; cd "$W"
fail() { echo "FAIL: $*"; exit 1; }

# MR DICOM with 2.5 mm between slices: pydicom reads the spacing back.
"$M" phantoms --modality mr --count 4 --shape 24,24,8 --spacing 0.9,0.9,2.5 --out data > /dev/null 2>&1
"$M" convert data/images/case_0001.nii.gz mr_series/ 2> /dev/null
"$PY" - mr_series <<'PY'
import pathlib, sys, pydicom
files = sorted(pathlib.Path(sys.argv[1]).glob("*.dcm"))
ds = [pydicom.dcmread(f) for f in files]
assert all(float(d.SpacingBetweenSlices) == 2.5 for d in ds), [d.SpacingBetweenSlices for d in ds]
assert all(float(d.SliceThickness) == 2.5 for d in ds)
z = sorted(float(d.ImagePositionPatient[2]) for d in ds)
assert all(abs((b - a) - 2.5) < 1e-6 for a, b in zip(z, z[1:])), z
assert str(ds[0].PatientName) == "ANONYMOUS^MEDDIFF", ds[0].PatientName
assert "SYNTHETIC" not in str(ds[0].SeriesDescription)
print("pydicom: MR SpacingBetweenSlices = SliceThickness = 2.5 mm, anonymous, not synthetic: ok")
PY

# Tiny models, then a sampling job slow enough to overlap a second one.
common=(--set data.manifest=data/manifest.json --set data.shape=[24,24,8] --set vqgan.n_hiddens=4
        --set vqgan.downsample=[2,2,2] --set vqgan.n_codes=16 --set vqgan.disc_channels=4 --set vqgan.disc_layers=2
        --set vqgan_train.device='"cpu"' --set ldm_train.device='"cpu"' --set ldm.timesteps=400
        --set ldm.unet.base_channels=8 --set ldm.unet.channel_mults=[1,2] --set ldm.unet.downsample=[[2,2,1]]
        --set ldm.unet.attention_levels=[1] --set ldm.unet.attention_heads=2 --set ldm_train.batch_size=2)
"$M" train-vqgan "${common[@]}" --set vqgan_train.steps=2 --out vq > /dev/null 2>&1
"$M" train-ldm "${common[@]}" --set ldm_train.steps=2 --vqgan vq/last.pt --out ldm > /dev/null 2>&1
job=(sample --ldm ldm/last.pt -n 4 --sampler ddpm --steps 200 --format nifti,png --threads 1 --out synth)
"$M" "${job[@]}" > first.log 2>&1 &
first=$!
for _ in $(seq 200); do [[ -s synth/.meddiff-shard-1-of-1.lock ]] && break; sleep 0.05; done
[[ -s synth/.meddiff-shard-1-of-1.lock ]] || fail "the first job never took its lock"
set +e; "$M" "${job[@]}" 2> second.err; rc=$?; set -e
[[ $rc == 1 ]] || fail "a second identical job ran (exit $rc)"
grep -q "in use by another meddiff job" second.err || fail "second job message: $(cat second.err)"
[[ $(wc -l < second.err) == 1 ]] || fail "error is not one line"
# kill the first job mid-run, then resume
for _ in $(seq 400); do [[ -f synth/synth_000001.json ]] && break; sleep 0.05; done
[[ -f synth/synth_000003.json ]] && echo "note: the first job had finished before the kill"
kill -9 $first 2>/dev/null || true; wait $first 2>/dev/null || true
"$M" "${job[@]}" > resume.log 2>&1 || fail "resume after kill: $(cat resume.log)"
"$PY" - synth <<'PY'
import json, pathlib, sys, zlib, nibabel as nib
d = pathlib.Path(sys.argv[1])
lines = [json.loads(l) for l in (d / "manifest.jsonl").read_text().splitlines()]
assert [l["index"] for l in lines] == list(range(4)), [l["index"] for l in lines]
assert not [p for p in d.iterdir() if ".tmp-" in p.name], "temporaries left"
for l in lines:
    img = nib.load(d / l["files"][0])
    assert img.header["descrip"].tobytes().startswith(b"SYNTHETIC meddiff"), img.header["descrip"]
    png = (d / l["files"][1]).read_bytes()
    chunks, at = {}, 8
    while at < len(png):
        n = int.from_bytes(png[at:at + 4], "big"); t = png[at + 4:at + 8]
        if t == b"tEXt":
            k, v = png[at + 8:at + 8 + n].split(b"\0", 1); chunks[k] = v
        at += 12 + n
    assert chunks[b"Description"].startswith(b"SYNTHETIC"), chunks
print("killed and resumed job: 4 manifest lines, each once; NIfTI descrip and PNG text say SYNTHETIC: ok")
PY
echo "e2e data safety: ok"
