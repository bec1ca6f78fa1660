#include "io/nifti_scan.h"

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

}  // namespace

NiftiScan scan_nifti(const std::filesystem::path& path) {
  const std::string name = path.string();
  GzFile f(path);
  if (!f.get()) fail("{}: cannot open", name);
  unsigned char hdr[540];
  int n = gzread(f.get(), hdr, sizeof hdr);
  if (n < 348) fail("{}: not a NIfTI file (header is {} bytes)", name, n < 0 ? 0 : n);
  // Header version and byte order from sizeof_hdr (348: NIfTI-1, 540: NIfTI-2).
  int32_t size_le = get<int32_t>(hdr, false), size_be = get<int32_t>(hdr, true);
  bool swap = !(size_le == 348 || size_le == 540);
  int32_t sizeof_hdr = swap ? size_be : size_le;
  if (sizeof_hdr != 348 && sizeof_hdr != 540) fail("{}: not a NIfTI file (bad header size)", name);
  bool v2 = sizeof_hdr == 540;
  if (v2 && n < 540) fail("{}: truncated NIfTI-2 header", name);
  int16_t datatype = get<int16_t>(hdr + (v2 ? 12 : 70), swap);
  int16_t bitpix = get<int16_t>(hdr + (v2 ? 14 : 72), swap);
  int64_t dims[8];
  for (int i = 0; i < 8; ++i) dims[i] = v2 ? get<int64_t>(hdr + 16 + 8 * i, swap) : get<int16_t>(hdr + 40 + 2 * i, swap);
  int64_t vox_offset = v2 ? get<int64_t>(hdr + 168, swap) : static_cast<int64_t>(get<float>(hdr + 108, swap));
  if (dims[0] < 1 || dims[0] > 7) fail("{}: invalid NIfTI dimension count {}", name, dims[0]);
  int64_t voxels = 1;
  for (int i = 1; i <= dims[0]; ++i) {
    if (dims[i] < 1) fail("{}: invalid NIfTI size {} along axis {}", name, dims[i], i);
    voxels *= dims[i];
  }
  NiftiScan s;
  s.expected_bytes = voxels * (bitpix / 8);
  // Skip to the voxels (single-file .nii; a vox_offset of 0 in a .nii means right after the header).
  int64_t start = std::max<int64_t>(vox_offset, sizeof_hdr);
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
  int err = Z_OK;
  gzerror(f.get(), &err);
  if (err != Z_OK && err != Z_STREAM_END && s.read_bytes >= s.expected_bytes) s.read_bytes = s.expected_bytes - 1;
  return s;
}

}  // namespace meddiff::io
