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


def volume(shape_xyz, base, seed):
    """Integer test volume: base + 10 * x + 100 * y + 1000 * z + seed, so every voxel says where it is."""
    x, y, z = np.meshgrid(*[np.arange(n) for n in shape_xyz], indexing="ij")
    return (base + 10 * x + 100 * y + 1000 * z + seed).astype(np.int32)


def write_datasets():
    """Small datasets in the layouts users keep real data in (nnU-Net v2 raw, MSD, BraTS 2021, a DICOM tree),
    each with a defect meddiff must report. datasets/expected.json lists the cases meddiff must find and voxel
    values (index x,y,z -> value) per channel, computed here."""
    import shutil
    root = OUT / "datasets"
    if root.exists():
        shutil.rmtree(root)
    shape = (6, 5, 4)
    checker = np.indices(shape).sum(axis=0)  # label maps: x + y + z modulo the label count
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    expected = {}

    def save(data, path):
        path.parent.mkdir(parents=True, exist_ok=True)
        img = nib.Nifti1Image(data.astype(np.int16), affine)
        raw = img.to_bytes()
        path.write_bytes(gzip.compress(raw, mtime=0))

    # nnU-Net v2 raw: two channels; case_002 lacks its ADC file.
    nn = root / "Dataset001_Tiny"
    nn.mkdir(parents=True)
    json.dump({"channel_names": {"0": "T2", "1": "ADC"}, "labels": {"background": 0, "zone": 1},
               "numTraining": 3, "file_ending": ".nii.gz"}, open(nn / "dataset.json", "w"))
    for i in range(3):
        for c in range(2):
            if i == 2 and c == 1:
                continue
            save(volume(shape, 20000 * c, i), nn / "imagesTr" / f"case_{i:03d}_{c:04d}.nii.gz")
        save(checker % 2, nn / "labelsTr" / f"case_{i:03d}.nii.gz")
    expected["nnunet"] = {"source": nn.name, "layout": "nnU-Net raw", "channel_names": ["T2", "ADC"],
                          "label_names": ["background", "zone"], "cases": ["case_000", "case_001"], "problems": 1,
                          "voxel": {"case": "case_001", "channel": 1, "index": [3, 2, 1],
                                    "value": int(volume(shape, 20000, 1)[3, 2, 1])}}

    # MSD: 4-D images, four channels; BRATS_003 is listed but missing.
    msd = root / "Task01_Tiny"
    msd.mkdir(parents=True)
    training = []
    for i in (1, 2, 3):
        training.append({"image": f"./imagesTr/BRATS_{i:03d}.nii.gz", "label": f"./labelsTr/BRATS_{i:03d}.nii.gz"})
        if i == 3:
            continue
        four = np.stack([volume(shape, 5000 * c, i) for c in range(4)], axis=-1)
        save(four, msd / "imagesTr" / f"BRATS_{i:03d}.nii.gz")
        save(checker % 3, msd / "labelsTr" / f"BRATS_{i:03d}.nii.gz")
    json.dump({"name": "Tiny", "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
               "labels": {"0": "background", "1": "edema", "2": "tumour"}, "numTraining": 3, "training": training,
               "test": []}, open(msd / "dataset.json", "w"))
    expected["msd"] = {"source": msd.name, "layout": "MSD", "channel_names": ["FLAIR", "T1w", "t1gd", "T2w"],
                       "label_names": ["background", "edema", "tumour"], "cases": ["BRATS_001", "BRATS_002"], "problems": 1,
                       "voxel": {"case": "BRATS_002", "channel": 2, "index": [4, 1, 3],
                                 "value": int(volume(shape, 10000, 2)[4, 1, 3])}}

    # BraTS 2021: case folders; 00001 lacks its t2, 00002 has no segmentation (a validation case).
    brats = root / "BraTS2021_tiny"
    seqs = ["t1", "t1ce", "t2", "flair"]
    for i in range(3):
        case = f"BraTS2021_{i:05d}"
        for c, s_ in enumerate(seqs):
            if i == 1 and s_ == "t2":
                continue
            save(volume(shape, 3000 * c, i), brats / case / f"{case}_{s_}.nii.gz")
        if i != 2:
            save(checker % 5 * (checker % 5 != 3), brats / case / f"{case}_seg.nii.gz")
    expected["brats"] = {"source": brats.name, "layout": "BraTS", "channel_names": seqs,
                         "cases": ["BraTS2021_00000", "BraTS2021_00002"], "problems": 1, "labels": [True, False],
                         "voxel": {"case": "BraTS2021_00002", "channel": 3, "index": [5, 4, 3],
                                   "value": int(volume(shape, 9000, 2)[5, 4, 3])}}

    # A DICOM tree: patient/study/series folders with a CT series, a localiser and a secondary capture, a flat
    # folder with two interleaved MR series under cryptic names, a text file and a truncated DICOM file.
    tree = root / "dicom_tree"

    def series(folder, names, modality, n, uid_key, description, image_type, sop_class, base):
        study = generate_uid(entropy_srcs=["tree-study-" + folder.parts[-2]])
        uid = generate_uid(entropy_srcs=["tree-series-" + uid_key])
        for k in range(n):
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = sop_class
            meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[f"tree-sop-{uid_key}-{k}"])
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = Dataset()
            ds.file_meta = meta
            ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
            ds.Modality, ds.ImageType, ds.SeriesDescription = modality, image_type, description
            ds.PatientName, ds.PatientID = "TREE^FIXTURE", "TREE-001"
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, uid
            ds.FrameOfReferenceUID = generate_uid(entropy_srcs=["tree-frame-" + uid_key])
            ds.SeriesNumber, ds.InstanceNumber = {"ct": 2, "scout": 1, "sc": 99, "t1": 3, "t2": 4}[uid_key], k + 1
            ds.ImagePositionPatient = ["0", "0", f"{2.0 * k:g}"]
            ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
            ds.PixelSpacing, ds.SliceThickness = ["0.7", "0.7"], "2"
            ds.Rows, ds.Columns = 4, 6
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
            if modality == "CT":
                ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
            pixels = (base + 10 * np.arange(6)[None, :] + 100 * np.arange(4)[:, None] + 1000 * k).astype(np.uint16)
            ds.PixelData = pixels.tobytes()
            folder.mkdir(parents=True, exist_ok=True)
            ds.save_as(folder / names(k), enforce_file_format=True)

    study = tree / "PAT1" / "STUDY1"
    ct, mr_axial = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"
    series(study / "SE1", lambda k: f"IM{k:04d}.dcm", "CT", 12, "ct", "CHEST 2.0", ["ORIGINAL", "PRIMARY", "AXIAL"], ct, 1000)
    series(study / "SE0", lambda k: f"IM{k:04d}.dcm", "CT", 3, "scout", "Topogram 0.6", ["ORIGINAL", "PRIMARY", "LOCALIZER"], ct, 0)
    series(study / "SE9", lambda k: f"IM{k:04d}.dcm", "CT", 12, "sc", "Dose report", ["DERIVED", "SECONDARY"],
           "1.2.840.10008.5.1.4.1.1.7", 0)
    flat = tree / "PAT2" / "dump"
    series(flat, lambda k: f"{(k * 7919) % 1000:08X}", "MR", 11, "t1", "T1 axial", ["ORIGINAL", "PRIMARY", "M"], mr_axial, 100)
    series(flat, lambda k: f"{(k * 104729 + 17) % 1000:08X}B", "MR", 10, "t2", "T2 axial", ["ORIGINAL", "PRIMARY", "M"], mr_axial, 200)
    (tree / "PAT2" / "README.txt").write_text("exported by a PACS\n")
    good = (study / "SE1" / "IM0000.dcm").read_bytes()
    (tree / "PAT2" / "broken.dcm").write_bytes(good[:180])  # the preamble, "DICM" and a cut file meta header
    expected["dicom"] = {"source": "dicom_tree", "layout": "DICOM tree", "cases": 3, "skipped": 2, "unreadable": ["broken.dcm"],
                         "modalities": {"CT": 1, "MR": 2},
                         "voxel": {"info_contains": "CT 12 slices", "index": [3, 2, 5], "value": 1000 + 30 + 200 + 5000 - 1024}}
    (root / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    write_nifti()
    write_dicom_series()
    write_bad_inputs()
    write_datasets()
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"fixtures written to {OUT} ({total} bytes)")
