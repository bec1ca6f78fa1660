#pragma once
// Direct checks of an image file's bytes, independent of ITK: the header is parsed here and the voxel
// payload counted (raw, or inflated when compressed). ITK's readers zero-fill a truncated payload
// (NIfTI, MetaImage, NRRD), replace NaN/Inf by 0 (NIfTI) and turn a NIfTI pixdim of 0 into 1 mm; the
// writers report a full disk only on stderr. meddiff runs these checks before every read and after
// every write, and refuses files that fail them, naming the file.
#include <array>
#include <cstdint>
#include <filesystem>
#include <string>

namespace meddiff::io {

struct PayloadScan {
  int64_t expected_bytes = 0;  // voxel bytes the header promises
  int64_t read_bytes = 0;      // voxel bytes actually present (decompressed)
  int64_t nonfinite = 0;       // NaN/Inf voxels (NIfTI float data; other readers keep NaN, checked later)
  bool checked = true;         // false when the layout cannot be checked here (e.g. bzip2 NRRD)
  bool complete() const { return read_bytes >= expected_bytes; }
};

// Throws (naming the file) if the header cannot be parsed, is NIfTI-2 (not supported by the reader),
// or has a spacing (pixdim) that is zero, negative or not finite. Plain and gzip-compressed files.
PayloadScan scan_nifti(const std::filesystem::path& path);
// MetaImage .mha (header + data) and .mhd (header; data in ElementDataFile), raw or zlib-compressed.
PayloadScan scan_metaimage(const std::filesystem::path& path);
// NRRD .nrrd (attached) and .nhdr (detached data file), raw, gzip, ascii or hex encoded.
PayloadScan scan_nrrd(const std::filesystem::path& path);
// By extension (nii, nii.gz, mha, mhd, nrrd, nhdr).
PayloadScan scan_payload(const std::filesystem::path& path);
// A quick check for indexing many files: the NIfTI header, and the file's length (plain) or gzip's recorded
// uncompressed length (compressed) against what the header promises; inflates the file (scan_nifti) only when
// the recorded length disagrees. Throws naming the file.
void check_nifti_quickly(const std::filesystem::path& path);
// Throws "<name>: truncated or corrupt: N of M voxel bytes present" (or the NaN count) when `s` fails.
void require_complete(const PayloadScan& s, const std::string& name);

namespace detail {
// Bytes of a zlib or gzip stream starting at `offset` in `path`, inflated and counted up to `limit`;
// `complete` tells whether the stream reached its end (or the limit) without an error.
int64_t inflated_size(const std::filesystem::path& path, int64_t offset, int64_t limit, bool& complete);
// Header text: surrounding blanks removed (lower case: core/text.h's to_lower).
std::string trim(const std::string& s);
// Size in bytes of a file, or -1.
int64_t file_size(const std::filesystem::path& path);
}  // namespace detail

}  // namespace meddiff::io
