// Shared parts of the payload checks: counting a compressed stream, the dispatcher by extension and
// the one error message.
#include "io/payload_scan.h"

#include "core/error.h"
#include "core/fs.h"
#include "core/text.h"

#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <vector>

namespace meddiff::io {
namespace detail {

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

int64_t file_size(const std::filesystem::path& path) {
  std::error_code ec;
  auto n = std::filesystem::file_size(path, ec);
  return ec ? -1 : static_cast<int64_t>(n);
}

int64_t inflated_size(const std::filesystem::path& path, int64_t offset, int64_t limit, bool& complete) {
  complete = false;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail("{}: cannot open", path.string());
  if (std::fseek(f, static_cast<long>(offset), SEEK_SET) != 0) {
    std::fclose(f);
    return 0;
  }
  z_stream z{};
  if (inflateInit2(&z, 15 + 32) != Z_OK) {  // zlib or gzip header, detected
    std::fclose(f);
    fail("{}: cannot start decompression", path.string());
  }
  std::vector<unsigned char> in(1 << 18), out(1 << 20);
  int64_t total = 0;
  int rc = Z_OK;
  while (rc != Z_STREAM_END && total < limit) {
    if (z.avail_in == 0) {
      size_t got = std::fread(in.data(), 1, in.size(), f);
      if (got == 0) break;  // input ended before the stream did
      z.next_in = in.data();
      z.avail_in = static_cast<uInt>(got);
    }
    z.next_out = out.data();
    z.avail_out = static_cast<uInt>(out.size());
    rc = inflate(&z, Z_NO_FLUSH);
    total += static_cast<int64_t>(out.size() - z.avail_out);
    if (rc == Z_STREAM_END && z.avail_in == 0) {
      // gzip members may follow one another: keep going if more input remains.
      int c = std::fgetc(f);
      if (c != EOF) {
        std::ungetc(c, f);
        inflateReset(&z);
        rc = Z_OK;
      }
    } else if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
      break;  // corrupt data
    }
  }
  complete = rc == Z_STREAM_END || total >= limit;
  inflateEnd(&z);
  std::fclose(f);
  return total;
}

}  // namespace detail

PayloadScan scan_payload(const std::filesystem::path& path) {
  std::string ext = full_extension(path);
  if (ext == "nii" || ext == "nii.gz") return scan_nifti(path);
  if (ext == "mha" || ext == "mhd") return scan_metaimage(path);
  if (ext == "nrrd" || ext == "nhdr") return scan_nrrd(path);
  fail("{}: no payload check for this file type", path.string());
}

void require_complete(const PayloadScan& s, const std::string& name) {
  if (!s.complete())
    fail("{}: truncated or corrupt: {} of {} voxel bytes present", name, s.read_bytes, s.expected_bytes);
  if (s.nonfinite > 0) fail("{}: {} voxel(s) are NaN or infinite", name, s.nonfinite);
}

}  // namespace meddiff::io
