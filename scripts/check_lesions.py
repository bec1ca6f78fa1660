#!/usr/bin/env python3
"""Checks whether synthetic MR head phantoms of class 1 show lesions and class 0 do not.

    .venv/bin/python scripts/check_lesions.py demo-out/samples          # synthetic volumes (class from the sidecars)
    .venv/bin/python scripts/check_lesions.py demo-out/data             # the real phantoms (class from manifest.json)

A volume "has a lesion" when at least MIN_VOXELS voxels are brighter than RATIO x the median of the
head (voxels above 10 % of the 99th percentile). Lesions are ~1.75x brighter than brain in the
phantoms; brain, skull and ventricles never exceed ~1.2x. Prints the 2x2 table, the accuracy and a
one-sided Fisher exact p-value for "lesions appear in class 1 more often than in class 0".
"""
import json
import math
import pathlib
import sys

import nibabel as nib
import numpy as np

RATIO, MIN_VOXELS = 1.4, 4


def has_lesion(path):
    v = nib.load(str(path)).get_fdata()
    head = v > 0.1 * np.percentile(v, 99)
    m = np.median(v[head])
    return int((v > RATIO * m).sum()) >= MIN_VOXELS


def cases(folder):
    folder = pathlib.Path(folder)
    if (folder / "manifest.json").exists():
        for c in json.loads((folder / "manifest.json").read_text())["cases"]:
            yield folder / c["image"], c["class"]
    else:
        for side in sorted(folder.glob("synth_*.json")):
            rec = json.loads(side.read_text())
            nii = [f for f in rec["files"] if f.endswith(".nii.gz")]
            if nii:
                yield folder / nii[0], rec["class"]


def fisher_one_sided(a, b, c, d):
    """P(X >= a) for the 2x2 table [[a, b], [c, d]] (rows: class 1, class 0; cols: lesion, none)."""
    n1, n0, k = a + b, c + d, a + c
    total = math.comb(n1 + n0, k)
    return sum(math.comb(n1, x) * math.comb(n0, k - x) for x in range(a, min(n1, k) + 1)) / total


def main():
    table = {(1, True): 0, (1, False): 0, (0, True): 0, (0, False): 0}
    for path, cls in cases(sys.argv[1]):
        table[(int(cls), has_lesion(path))] += 1
    a, b, c, d = table[(1, True)], table[(1, False)], table[(0, True)], table[(0, False)]
    n = a + b + c + d
    print(f"class 1: {a} with lesions, {b} without; class 0: {c} with lesions, {d} without")
    print(f"accuracy {(a + d) / max(1, n):.2f} over {n} volumes; one-sided Fisher p = {fisher_one_sided(a, b, c, d):.4f}")


if __name__ == "__main__":
    main()
