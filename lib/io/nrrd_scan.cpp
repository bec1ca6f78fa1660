// NRRD (.nrrd attached, .nhdr detached) payload check: sizes and type against the bytes present,
// for raw, gzip, ascii and hex encodings (bzip2 is left to ITK's reader).
#include "core/error.h"
#include "core/text.h"
#include "io/payload_scan.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

namespace meddiff::io {
namespace {
using detail::trim;

int64_t type_bytes(const std::string& type_in, const std::string& name) {
  std::string t = to_lower(type_in);
  for (auto pre : {"signed ", "unsigned "})
    if (t.rfind(pre, 0) == 0) t = t.substr(std::string(pre).size());
  if (t.size() > 4 && t.compare(t.size() - 4, 4, " int") == 0 && t != "int") t = t.substr(0, t.size() - 4);
  if (t.size() > 2 && t.compare(t.size() - 2, 2, "_t") == 0) t = t.substr(0, t.size() - 2);
  static const std::map<std::string, int64_t> sizes = {
      {"char", 1}, {"uchar", 1}, {"int8", 1}, {"uint8", 1}, {"short", 2}, {"ushort", 2}, {"int16", 2}, {"uint16", 2},
      {"int", 4}, {"uint", 4}, {"int32", 4}, {"uint32", 4}, {"long long", 8}, {"longlong", 8}, {"ulonglong", 8},
      {"int64", 8}, {"uint64", 8}, {"float", 4}, {"double", 8}};
  auto it = sizes.find(t);
  if (it == sizes.end()) fail("{}: unsupported NRRD type '{}'", name, type_in);
  return it->second;
}

// Payload bytes in a text encoding: hex digit pairs (hex) or numbers times the element size (ascii).
int64_t text_bytes(std::istream& in, bool hex, int64_t elem) {
  int64_t count = 0;
  if (hex) {
    char c;
    while (in.get(c))
      if (std::isxdigit(static_cast<unsigned char>(c))) ++count;
    return count / 2;
  }
  std::string tok;
  while (in >> tok) ++count;
  return count * elem;
}

}  // namespace

PayloadScan scan_nrrd(const std::filesystem::path& path) {
  const std::string name = path.string();
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open", name);
  std::string line;
  if (!std::getline(in, line) || line.rfind("NRRD", 0) != 0) fail("{}: not a NRRD file (corrupt or wrong format: no NRRD magic)", name);
  std::map<std::string, std::string> f;
  std::vector<std::string> list_files;
  bool in_list = false;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (in_list) {
      if (!trim(line).empty()) list_files.push_back(trim(line));
      continue;
    }
    if (line.empty()) break;  // end of an attached header
    if (line[0] == '#' || line.find(":=") != std::string::npos) continue;
    auto colon = line.find(": ");
    if (colon == std::string::npos) continue;
    std::string key = to_lower(trim(line.substr(0, colon))), value = trim(line.substr(colon + 2));
    key.erase(std::remove(key.begin(), key.end(), ' '), key.end());
    f[key] = value;
    if (key == "datafile" && to_lower(value).rfind("list", 0) == 0) in_list = true;
  }
  int64_t header_end = in.eof() ? detail::file_size(path) : static_cast<int64_t>(in.tellg());
  if (!f.count("sizes") || !f.count("type")) fail("{}: not a NRRD file (corrupt or wrong format: no sizes or type)", name);
  PayloadScan s;
  int64_t voxels = 1;
  {
    std::istringstream ss(f["sizes"]);
    std::string item;
    while (ss >> item) {
      int64_t n = 0;
      try {
        n = std::stoll(item);
      } catch (const std::exception&) {
      }
      if (n < 1) fail("{}: invalid sizes '{}'", name, f["sizes"]);
      voxels *= n;
    }
  }
  const int64_t elem = type_bytes(f["type"], name);
  s.expected_bytes = voxels * elem;
  if (f.count("spacings")) {
    std::istringstream ss(f["spacings"]);
    std::string item;
    while (ss >> item) {
      if (to_lower(item) == "nan") continue;  // NRRD's "no spacing on this axis" (e.g. a vector axis)
      double v = std::nan("");
      try {
        v = std::stod(item);
      } catch (const std::exception&) {
      }
      if (!std::isfinite(v) || v <= 0) fail("{}: voxel spacing '{}' is not positive", name, f["spacings"]);
    }
  }
  std::string enc = to_lower(f.count("encoding") ? f["encoding"] : "raw");
  const bool gz = enc == "gz" || enc == "gzip", raw = enc == "raw", hex = enc == "hex";
  const bool text = enc == "ascii" || enc == "text" || enc == "txt";
  if (!gz && !raw && !hex && !text) {
    s.checked = false;  // bzip2: left to ITK's reader
    s.read_bytes = s.expected_bytes;
    return s;
  }
  std::vector<std::filesystem::path> files;
  auto dir = path.parent_path();
  std::string df = f.count("datafile") ? f["datafile"] : "";
  if (df.empty()) {
    files.push_back(path);
  } else if (in_list) {
    for (const auto& x : list_files) files.push_back(dir / x);
  } else if (df.find('%') != std::string::npos) {
    s.checked = false;  // file-name pattern: left to ITK's reader
    s.read_bytes = s.expected_bytes;
    return s;
  } else {
    files.push_back(std::filesystem::path(df).is_absolute() ? std::filesystem::path(df) : dir / df);
  }
  const int64_t line_skip = f.count("lineskip") ? std::stoll(f["lineskip"]) : 0;
  const int64_t byte_skip = f.count("byteskip") ? std::stoll(f["byteskip"]) : 0;
  for (size_t i = 0; i < files.size(); ++i) {
    const auto& file = files[i];
    int64_t size = detail::file_size(file);
    if (size < 0) fail("{}: data file {} is missing", name, file.string());
    int64_t offset = file == path ? header_end : 0;
    if (line_skip > 0) {
      std::ifstream d(file, std::ios::binary);
      d.seekg(offset);
      for (int64_t k = 0; k < line_skip && std::getline(d, line); ++k) {
      }
      offset = d ? static_cast<int64_t>(d.tellg()) : size;
    }
    const int64_t want = s.expected_bytes - s.read_bytes;
    if (raw) {
      if (byte_skip == -1) offset = std::max<int64_t>(offset, size - want);
      else offset += byte_skip;
      s.read_bytes += std::max<int64_t>(0, size - offset);
    } else if (gz) {
      bool complete = false;
      int64_t got = detail::inflated_size(file, offset + std::max<int64_t>(0, byte_skip), want, complete);
      s.read_bytes += complete ? got : std::min(got, want - 1);
    } else {
      std::ifstream d(file, std::ios::binary);
      d.seekg(offset);
      s.read_bytes += text_bytes(d, hex, elem);
    }
  }
  return s;
}

}  // namespace meddiff::io
