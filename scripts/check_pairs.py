#!/usr/bin/env python3
"""Checks that synthetic image + label pairs of the built-in phantoms agree with their label maps,
reading the NIfTI files with nibabel (independently of meddiff's own per-pair check).

    .venv/bin/python scripts/check_pairs.py mr demo-out/samples_heldout
    .venv/bin/python scripts/check_pairs.py ct nnUNet_raw/Dataset901_Synth

Pairs: flat layout (synth_NNNNNN.nii.gz + synth_NNNNNN_label.nii.gz) or nnU-Net layout
(imagesTr/X_0000.nii.gz + labelsTr/X.nii.gz). Phantom labels: MR 2 brain, 4 lesion; CT 2 lung, 3 bone,
4 nodule. Criteria (median intensity inside each label of a pair):
    MR: lesion > brain, over the pairs whose map has a lesion;
    CT: lung < -600 HU, bone > 300 HU, and nodule > -300 HU over the pairs whose map has a nodule.
Prints per criterion how many pairs meet it; exits 1 when any is met by fewer than --min-share.
"""
import argparse
import pathlib
import sys

import nibabel as nib
import numpy as np


def pairs(folder):
    folder = pathlib.Path(folder)
    if (folder / "labelsTr").is_dir():
        for lab in sorted((folder / "labelsTr").glob("*.nii.gz")):
            yield folder / "imagesTr" / lab.name.replace(".nii.gz", "_0000.nii.gz"), lab
    else:
        for lab in sorted(folder.glob("*_label.nii.gz")):
            yield folder / lab.name.replace("_label.nii.gz", ".nii.gz"), lab


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("modality", choices=["mr", "ct"])
    ap.add_argument("folder")
    ap.add_argument("--min-share", type=float, default=0.9)
    args = ap.parse_args()
    counts = {}  # criterion -> [met, applicable]
    def count(name, applicable, met):
        if applicable:
            c = counts.setdefault(name, [0, 0])
            c[1] += 1
            c[0] += int(bool(met))
    n = 0
    for img_path, lab_path in pairs(args.folder):
        img, lab = nib.load(str(img_path)), nib.load(str(lab_path))
        if img.shape != lab.shape or not np.allclose(img.affine, lab.affine, atol=1e-4):
            print(f"{img_path.name}: image and label map are not on the same grid", file=sys.stderr)
            return 1
        x, l = img.get_fdata(), np.rint(lab.get_fdata()).astype(int)
        med = {k: float(np.median(x[l == k])) for k in np.unique(l)}
        n += 1
        if args.modality == "mr":
            count("lesion median > brain median", 4 in med and 2 in med, med.get(4, 0) > med.get(2, 0))
        else:
            count("lung median < -600 HU", 2 in med, med.get(2, 0) < -600)
            count("bone median > 300 HU", 3 in med, med.get(3, 0) > 300)
            count("nodule median > -300 HU", 4 in med, med.get(4, -1000) > -300)
    if n == 0:
        print(f"{args.folder}: no image + label pairs", file=sys.stderr)
        return 1
    ok = True
    print(f"{n} pairs in {args.folder}")
    for name, (met, total) in counts.items():
        share = met / total if total else 0
        ok &= share >= args.min_share
        print(f"  {name}: {met} of {total} ({100 * share:.0f} %)")
    return 0 if ok and counts else 1


if __name__ == "__main__":
    sys.exit(main())
