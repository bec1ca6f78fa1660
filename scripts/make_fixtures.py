#!/usr/bin/env python3
"""Writes the small test fixtures in tests/fixtures/ with tools independent of meddiff:
nibabel for NIfTI, pydicom for DICOM. Run with the project environment:

    .venv/bin/python scripts/make_fixtures.py

Every fixture has an `*.expected.json` beside it with the LPS index-to-world affine and sample voxels
(index, world position in mm, value) computed here, so the tests check meddiff against numbers it
did not compute itself. Deterministic: running it again gives identical voxel data.
"""
import gzip
import json
import math
import os
import pathlib

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures"

# Geometry shared by the oblique fixtures: anisotropic spacing and a rotation that is not axis-aligned.
SHAPE_XYZ = (12, 10, 8)
SPACING = (0.8, 0.9, 2.5)
ORIGIN_LPS = (-40.25, 22.5, 101.75)


def rotation(ax, ay, az):
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


DIRECTION_LPS = rotation(0.3, -0.2, 0.5)  # columns: directions of the x, y, z index axes


def lps_affine():
    a = np.eye(4)
    a[:3, :3] = DIRECTION_LPS @ np.diag(SPACING)
    a[:3, 3] = ORIGIN_LPS
    return a


def hu_values():
    """int16 HU indexed [x, y, z] (nibabel order): a pattern with every voxel distinct-ish."""
    i, j, k = np.meshgrid(*[np.arange(n) for n in SHAPE_XYZ], indexing="ij")
    return (((i * 37 + j * 101 + k * 211) % 2400) - 1024).astype(np.int16)


def expected(affine_lps, data_xyz, path):
    samples = []
    for idx in [(0, 0, 0), (11, 0, 0), (0, 9, 0), (0, 0, 7), (5, 4, 3), (11, 9, 7), (3, 8, 6)]:
        w = affine_lps @ np.array([*idx, 1.0])
        samples.append({"index_xyz": list(idx), "world_lps": [float(x) for x in w[:3]], "value": float(data_xyz[idx])})
    rec = {"affine_lps": affine_lps.tolist(), "shape_xyz": list(data_xyz.shape), "samples": samples,
           "min": float(data_xyz.min()), "max": float(data_xyz.max())}
    path.write_text(json.dumps(rec, indent=1) + "\n")


def write_nifti():
    data = hu_values()
    lps = lps_affine()
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # NIfTI stores RAS+ world coordinates
    img = nib.Nifti1Image(data, ras)
    img.set_qform(ras, code=1)
    img.set_sform(ras, code=1)
    nib.save(img, OUT / "ct_oblique.nii.gz")
    expected(lps, data, OUT / "ct_oblique.expected.json")


def write_dicom_series():
    """CT series written by pydicom: stored values = HU + 1024 (uint16) with RescaleIntercept -1024,
    slices in shuffled file order, so the reader must sort by position and apply the rescale."""
    folder = OUT / "ct_oblique_dicom"
    folder.mkdir(exist_ok=True)
    for f in folder.glob("*.dcm"):
        f.unlink()
    data = hu_values()
    lps = lps_affine()
    study, series, frame = generate_uid(entropy_srcs=["meddiff-fixture-study"]), generate_uid(
        entropy_srcs=["meddiff-fixture-series"]), generate_uid(entropy_srcs=["meddiff-fixture-frame"])
    row_dir, col_dir = DIRECTION_LPS[:, 0], DIRECTION_LPS[:, 1]
    order = [3, 0, 6, 1, 7, 2, 5, 4]  # file names not in slice order
    for file_no, k in enumerate(order):
        sop = generate_uid(entropy_srcs=[f"meddiff-fixture-sop-{k}"])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = sop
        ds.Modality = "CT"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PatientName = "FIXTURE^PYDICOM"
        ds.PatientID = "FIXTURE-001"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SeriesDescription = "pydicom fixture"
        ds.SeriesNumber, ds.InstanceNumber = 3, k + 1
        pos = lps @ np.array([0, 0, k, 1.0])
        ds.ImagePositionPatient = [f"{v:.6f}" for v in pos[:3]]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [f"{SPACING[1]:g}", f"{SPACING[0]:g}"]  # row spacing (y), column spacing (x)
        ds.SliceThickness = f"{SPACING[2]:g}"
        ds.Rows, ds.Columns = SHAPE_XYZ[1], SHAPE_XYZ[0]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
        stored = (data[:, :, k].T.astype(np.int32) + 1024).astype(np.uint16)  # [rows=y, cols=x]
        ds.PixelData = stored.tobytes()
        ds.save_as(folder / f"slice_{file_no:02d}.dcm", enforce_file_format=True)
    expected(lps, data, OUT / "ct_oblique_dicom.expected.json")


def write_bad_inputs():
    rng = np.random.default_rng(0)
    four_d = rng.integers(0, 100, size=(6, 6, 6, 2)).astype(np.int16)
    nib.save(nib.Nifti1Image(four_d, np.eye(4)), OUT / "four_d.nii.gz")
    two_d = rng.integers(0, 100, size=(8, 8)).astype(np.int16)
    nib.save(nib.Nifti1Image(two_d, np.eye(4)), OUT / "two_d.nii.gz")
    nan = rng.normal(size=(6, 6, 6)).astype(np.float32)
    nan[2, 3, 4] = np.nan
    nib.save(nib.Nifti1Image(nan, np.eye(4)), OUT / "nan_voxel.nii.gz")
    small = rng.integers(0, 100, size=(5, 6, 7)).astype(np.int16)
    # NIfTI-2 (540-byte header), which ITK's NIfTI reader does not read.
    nib.save(nib.Nifti2Image(small, np.eye(4)), OUT / "nifti2.nii.gz")
    # pixdim 0 and NaN: nibabel keeps pixdim in step with the affine on save, so the header bytes are
    # patched afterwards (pixdim[i] is the float32 at byte 76 + 4 i of a NIfTI-1 header).
    for name, axis, value in [("zero_pixdim.nii.gz", 3, 0.0), ("nan_pixdim.nii.gz", 1, float("nan"))]:
        raw = bytearray(nib.Nifti1Image(small, np.eye(4)).to_bytes())
        raw[76 + 4 * axis:80 + 4 * axis] = np.float32(value).tobytes()
        (OUT / name).write_bytes(gzip.compress(bytes(raw), mtime=0))


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    write_nifti()
    write_dicom_series()
    write_bad_inputs()
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"fixtures written to {OUT} ({total} bytes)")
