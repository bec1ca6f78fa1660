#!/usr/bin/env bash
# Checkpoints open in Python's torch.load (default weights_only=True) as a dict of named tensors with
# the config as a JSON string. Usage: checkpoint_python.sh MEDDIFF SOURCE_DIR WORKDIR
set -euo pipefail
M=$1; SRC=$2; W=$3
PY="$SRC/.venv/bin/python"
[[ -x $PY ]] || { echo "no $PY (run scripts/setup.sh)"; exit 1; }
rm -rf "$W"; mkdir -p "$W"; cd "$W"
"$M" phantoms --modality mr --count 3 --shape 16,16,16 --out data > /dev/null 2>&1
"$M" train-vqgan --config "$SRC/configs/demo-mr.json" --set data.manifest=data/manifest.json --set data.shape=[16,16,16] \
  --set vqgan_train.steps=2 --set vqgan_train.device='"cpu"' --out vq > /dev/null 2>&1
"$PY" - vq/last.pt <<'PY'
import json, sys, torch
d = torch.load(sys.argv[1])  # weights_only=True by default in this torch
assert isinstance(d, dict), type(d)
assert d["kind"] == "vqgan" and d["step"] == 2, (d["kind"], d["step"])
cfg = json.loads(d["config"])
assert cfg["vqgan"]["n_codes"] == 512
sd = d["state_dict"]
w = sd["model.encoder.conv_first.conv.weight"]
assert isinstance(w, torch.Tensor) and tuple(w.shape) == (16, 1, 3, 3, 3), w.shape
assert sd["model.codebook.embeddings"].shape == (512, 8)
print(f"torch.load: {len(sd)} tensors, kind {d['kind']}, step {d['step']}: ok")
PY
