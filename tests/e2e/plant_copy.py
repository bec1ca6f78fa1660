#!/usr/bin/env python3
"""Write a copy of a NIfTI-1 volume, circularly shifted and with Gaussian noise added: the planted
near-copies of the memorisation audit's tests. Standard library only, so it is independent of meddiff.

Usage: plant_copy.py IN.nii.gz OUT.nii.gz [--shift I,J,K] [--noise FRACTION] [--seed N]
  --shift: voxels along the file's first, second and third axes; --noise: standard deviation as a
  fraction of the volume's value range. Integer and float32 volumes."""
import argparse, gzip, random, struct, sys

TYPES = {2: ("B", 1), 4: ("h", 2), 8: ("i", 4), 16: ("f", 4), 512: ("H", 2), 256: ("b", 1)}

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src"); ap.add_argument("dst")
    ap.add_argument("--shift", default="0,0,0"); ap.add_argument("--noise", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    raw = gzip.open(a.src).read() if a.src.endswith(".gz") else open(a.src, "rb").read()
    end = "<" if struct.unpack("<i", raw[:4])[0] == 348 else ">"
    dims = struct.unpack(end + "8h", raw[40:56])
    dtype = struct.unpack(end + "h", raw[70:72])[0]
    offset = max(352, int(struct.unpack(end + "f", raw[108:112])[0]))
    if dims[0] != 3 or dtype not in TYPES:
        sys.exit(f"{a.src}: need a 3-D volume of a plain integer or float32 type (dim {dims[0]}, datatype {dtype})")
    nx, ny, nz = dims[1:4]
    code, size = TYPES[dtype]
    n = nx * ny * nz
    vals = struct.unpack(f"{end}{n}{code}", raw[offset:offset + n * size])
    si, sj, sk = (int(s) for s in a.shift.split(","))
    out = [0] * n
    for k in range(nz):
        for j in range(ny):
            for i in range(nx):
                out[((k + sk) % nz) * nx * ny + ((j + sj) % ny) * nx + (i + si) % nx] = vals[k * nx * ny + j * nx + i]
    if a.noise > 0:
        rng = random.Random(a.seed)
        sd = a.noise * (max(vals) - min(vals))
        out = [v + rng.gauss(0.0, sd) for v in out]
    if code != "f":
        lo, hi = {"B": (0, 255), "h": (-32768, 32767), "i": (-2**31, 2**31 - 1), "H": (0, 65535), "b": (-128, 127)}[code]
        out = [min(hi, max(lo, int(round(v)))) for v in out]
    body = raw[:offset] + struct.pack(f"{end}{n}{code}", *out)
    (gzip.open(a.dst, "wb") if a.dst.endswith(".gz") else open(a.dst, "wb")).write(body)

if __name__ == "__main__":
    main()
