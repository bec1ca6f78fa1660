#include "io/payload_scan.h"

#include "core/error.h"

#include <zlib.h>

#include <cmath>
#include <cstring>
#include <vector>

namespace meddiff::io {
namespace {

template <typename T>
T get(const unsigned char* p, bool swap) {
  unsigned char b[sizeof(T)];
  std::memcpy(b, p, sizeof(T));
  if (swap)
    for (size_t i = 0; i < sizeof(T) / 2; ++i) std::swap(b[i], b[sizeof(T) - 1 - i]);
  T v;
  std::memcpy(&v, b, sizeof(T));
  return v;
}

class GzFile {
 public:
  explicit GzFile(const std::filesystem::path& p) : f_(gzopen(p.string().c_str(), "rb")) {}
  ~GzFile() {
    if (f_) gzclose(f_);
  }
  gzFile get() const { return f_; }

 private:
  gzFile f_;
};

struct NiftiHeader {
  bool swap = false;
  int16_t datatype = 0, bitpix = 0;
  int64_t voxels = 1;
  int64_t start = 348;  // byte offset of the voxels in the (uncompressed) file
  int64_t payload_bytes() const { return voxels * (bitpix / 8); }
};

// The header of an opened NIfTI-1 file, checked; throws naming the file.
NiftiHeader read_header(gzFile f, const std::string& name) {
  unsigned char hdr[348];
  int n = gzread(f, hdr, sizeof hdr);
  if (n < 4) fail("{}: not a NIfTI file (corrupt or wrong format: {} header bytes)", name, n < 0 ? 0 : n);
  // Header version and byte order from sizeof_hdr (348: NIfTI-1, 540: NIfTI-2).
  int32_t size_le = get<int32_t>(hdr, false), size_be = get<int32_t>(hdr, true);
  if (size_le == 540 || size_be == 540)
    fail("{}: is a NIfTI-2 file, which meddiff does not read; save it as NIfTI-1 (e.g. nibabel.Nifti1Image)", name);
  NiftiHeader h;
  h.swap = size_le != 348;
  const bool swap = h.swap;
  if ((swap ? size_be : size_le) != 348) fail("{}: not a NIfTI file (corrupt or wrong format: bad header size)", name);
  if (n < 348) fail("{}: truncated NIfTI header ({} of 348 bytes)", name, n);
  h.datatype = get<int16_t>(hdr + 70, swap);
  h.bitpix = get<int16_t>(hdr + 72, swap);
  int64_t dims[8];
  for (int i = 0; i < 8; ++i) dims[i] = get<int16_t>(hdr + 40 + 2 * i, swap);
  auto vox_offset = static_cast<int64_t>(get<float>(hdr + 108, swap));
  if (dims[0] < 1 || dims[0] > 7) fail("{}: invalid NIfTI dimension count {}", name, dims[0]);
  for (int i = 1; i <= dims[0]; ++i) {
    if (dims[i] < 1) fail("{}: invalid NIfTI size {} along axis {}", name, dims[i], i);
    h.voxels *= dims[i];
  }
  // Spacing of the spatial axes (pixdim[1..3]): ITK's reader turns 0 into 1 mm silently.
  for (int i = 1; i <= std::min<int64_t>(3, dims[0]); ++i) {
    float pd = get<float>(hdr + 76 + 4 * i, swap);
    if (!std::isfinite(pd) || pd <= 0) fail("{}: voxel spacing pixdim[{}] = {} is not a positive number", name, i, pd);
  }
  // The voxels (single-file .nii; a vox_offset of 0 in a .nii means right after the header).
  h.start = std::max<int64_t>(vox_offset, 348);
  return h;
}

}  // namespace

PayloadScan scan_nifti(const std::filesystem::path& path) {
  const std::string name = path.string();
  GzFile f(path);
  if (!f.get()) fail("{}: cannot open", name);
  const NiftiHeader h = read_header(f.get(), name);
  const bool swap = h.swap;
  const int64_t start = h.start;
  const int16_t datatype = h.datatype, bitpix = h.bitpix;
  PayloadScan s;
  s.expected_bytes = h.payload_bytes();
  if (gzseek(f.get(), static_cast<z_off_t>(start), SEEK_SET) < 0) fail("{}: truncated before the voxel data", name);
  std::vector<unsigned char> buf(1 << 20);
  const bool is_f32 = datatype == 16, is_f64 = datatype == 64;
  const int elem = std::max(1, bitpix / 8);
  std::vector<unsigned char> carry;
  while (s.read_bytes < s.expected_bytes) {
    auto want = static_cast<unsigned>(std::min<int64_t>(static_cast<int64_t>(buf.size()), s.expected_bytes - s.read_bytes));
    int got = gzread(f.get(), buf.data(), want);
    if (got <= 0) break;
    if (is_f32 || is_f64) {
      carry.insert(carry.end(), buf.begin(), buf.begin() + got);
      size_t whole = carry.size() / static_cast<size_t>(elem) * static_cast<size_t>(elem);
      for (size_t i = 0; i < whole; i += static_cast<size_t>(elem)) {
        double v = is_f32 ? get<float>(carry.data() + i, swap) : get<double>(carry.data() + i, swap);
        if (!std::isfinite(v)) ++s.nonfinite;
      }
      carry.erase(carry.begin(), carry.begin() + static_cast<std::ptrdiff_t>(whole));
    }
    s.read_bytes += got;
  }
  // Drive a compressed stream to its end: a missing gzip trailer is a truncated file too.
  unsigned char extra;
  if (s.read_bytes >= s.expected_bytes) gzread(f.get(), &extra, 1);
  int err = Z_OK;
  gzerror(f.get(), &err);
  if (err != Z_OK && err != Z_STREAM_END && s.read_bytes >= s.expected_bytes) s.read_bytes = s.expected_bytes - 1;
  return s;
}

void check_nifti_quickly(const std::filesystem::path& path) {
  const std::string name = path.string();
  NiftiHeader h;
  {
    GzFile f(path);
    if (!f.get()) fail("{}: cannot open", name);
    h = read_header(f.get(), name);
  }
  const int64_t expected = h.start + h.payload_bytes();
  const int64_t size = detail::file_size(path);
  unsigned char head[2] = {}, tail[4] = {};
  {
    std::FILE* raw = std::fopen(name.c_str(), "rb");
    if (!raw) fail("{}: cannot open", name);
    bool ok = std::fread(head, 1, 2, raw) == 2 && std::fseek(raw, -4, SEEK_END) == 0 && std::fread(tail, 1, 4, raw) == 4;
    std::fclose(raw);
    if (!ok) fail("{}: truncated NIfTI file", name);
  }
  if (head[0] == 0x1f && head[1] == 0x8b) {
    // gzip's trailer holds the uncompressed size mod 2^32: a whole file's matches the header's promise.
    uint32_t isize = get<uint32_t>(tail, false);
    if (isize == static_cast<uint32_t>(expected)) return;
    require_complete(scan_nifti(path), name);  // multi-member gzip, trailing data: decide by inflating
  } else if (size < expected) {
    fail("{}: truncated or corrupt: {} of {} voxel bytes present", name, std::max<int64_t>(0, size - h.start), h.payload_bytes());
  }
}

}  // namespace meddiff::io
