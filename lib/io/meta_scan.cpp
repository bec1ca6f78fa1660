// MetaImage (.mha / .mhd) payload check: the header's DimSize, ElementType and channels against the
// bytes present in the data (LOCAL after the header, a separate file, or a LIST of slice files).
#include "core/error.h"
#include "core/text.h"
#include "io/payload_scan.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

namespace meddiff::io {
namespace {
using detail::trim;

int64_t element_bytes(const std::string& type, const std::string& name) {
  static const std::map<std::string, int64_t> sizes = {
      {"met_char", 1}, {"met_uchar", 1}, {"met_short", 2}, {"met_ushort", 2}, {"met_int", 4}, {"met_uint", 4},
      {"met_long", 4}, {"met_ulong", 4}, {"met_long_long", 8}, {"met_ulong_long", 8}, {"met_float", 4}, {"met_double", 8}};
  std::string t = to_lower(type);
  auto arr = t.find("_array");
  if (arr != std::string::npos) t = t.substr(0, arr);
  auto it = sizes.find(t);
  if (it == sizes.end()) fail("{}: unknown MetaImage ElementType '{}'", name, type);
  return it->second;
}

std::vector<double> numbers(const std::string& v) {
  std::vector<double> out;
  std::istringstream ss(v);
  std::string item;
  while (ss >> item) {
    try {
      out.push_back(std::stod(item));
    } catch (const std::exception&) {
      out.push_back(std::nan(""));
    }
  }
  return out;
}

}  // namespace

PayloadScan scan_metaimage(const std::filesystem::path& path) {
  const std::string name = path.string();
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open", name);
  std::map<std::string, std::string> h;  // lower-case key -> value
  std::string line, data_file;
  int64_t header_end = -1;
  std::vector<std::string> list_files;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string key = to_lower(trim(line.substr(0, eq))), value = trim(line.substr(eq + 1));
    h[key] = value;
    if (key == "elementdatafile") {  // always the last header field
      data_file = value;
      header_end = static_cast<int64_t>(in.tellg());
      if (to_lower(value).rfind("list", 0) == 0) {
        while (std::getline(in, line))
          if (!trim(line).empty()) list_files.push_back(trim(line));
      }
      break;
    }
  }
  if (data_file.empty() || header_end < 0) fail("{}: not a MetaImage file (corrupt or wrong format: no ElementDataFile)", name);
  if (!h.count("dimsize") || !h.count("elementtype")) fail("{}: not a MetaImage file (corrupt or wrong format: no DimSize or ElementType)", name);
  PayloadScan s;
  int64_t voxels = 1;
  for (double d : numbers(h["dimsize"])) {
    if (!(d >= 1) || d != std::floor(d)) fail("{}: invalid DimSize '{}'", name, h["dimsize"]);
    voxels *= static_cast<int64_t>(d);
  }
  int64_t channels = h.count("elementnumberofchannels") ? static_cast<int64_t>(numbers(h["elementnumberofchannels"]).at(0)) : 1;
  s.expected_bytes = voxels * std::max<int64_t>(1, channels) * element_bytes(h["elementtype"], name);
  for (const char* key : {"elementspacing", "elementsize"})
    if (h.count(key))
      for (double sp : numbers(h[key]))
        if (!std::isfinite(sp) || sp <= 0) fail("{}: voxel spacing '{}' is not positive ({})", name, h[key], key);
  bool compressed = h.count("compresseddata") && to_lower(h["compresseddata"]) == "true";
  bool binary = !h.count("binarydata") || to_lower(h["binarydata"]) == "true";
  if (!binary) {
    s.checked = false;  // ASCII voxels: ITK's reader parses (and fails on) them itself
    s.read_bytes = s.expected_bytes;
    return s;
  }
  auto dir = path.parent_path();
  std::vector<std::filesystem::path> files;
  int64_t offset = 0;
  if (to_lower(data_file) == "local") {
    files.push_back(path);
    offset = header_end;
  } else if (!list_files.empty() || to_lower(data_file).rfind("list", 0) == 0) {
    for (const auto& f : list_files) files.push_back(dir / f);
  } else if (data_file.find('%') != std::string::npos) {
    s.checked = false;  // file-name pattern: each slice file is checked by ITK's reader only
    s.read_bytes = s.expected_bytes;
    return s;
  } else {
    files.push_back(dir / data_file);
    int64_t hs = h.count("headersize") ? static_cast<int64_t>(numbers(h["headersize"]).at(0)) : 0;
    offset = hs < 0 ? std::max<int64_t>(0, detail::file_size(files.back()) - s.expected_bytes) : hs;
  }
  for (const auto& f : files) {
    if (detail::file_size(f) < 0) fail("{}: data file {} is missing", name, f.string());
    if (compressed) {
      bool complete = false;
      int64_t got = detail::inflated_size(f, offset, s.expected_bytes - s.read_bytes, complete);
      s.read_bytes += complete ? got : std::min(got, s.expected_bytes - 1);
    } else {
      s.read_bytes += std::max<int64_t>(0, detail::file_size(f) - offset);
    }
    offset = 0;
  }
  return s;
}

}  // namespace meddiff::io
