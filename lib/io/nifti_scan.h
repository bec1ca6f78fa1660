#pragma once
// A direct scan of a NIfTI file's voxel bytes. ITK's NIfTI reader (nifti1_io) silently replaces
// NaN/Inf floats by 0 and zero-fills a truncated .nii.gz; meddiff must refuse both, so it checks
// the bytes itself before trusting ITK's reading.
#include <cstdint>
#include <filesystem>

namespace meddiff::io {

struct NiftiScan {
  int64_t expected_bytes = 0;  // voxel bytes the header promises
  int64_t read_bytes = 0;      // voxel bytes actually present
  int64_t nonfinite = 0;       // NaN/Inf voxels (float32 and float64 data)
};

// Throws (naming the file) if the header cannot be parsed; plain and gzip-compressed files.
NiftiScan scan_nifti(const std::filesystem::path& path);

}  // namespace meddiff::io
