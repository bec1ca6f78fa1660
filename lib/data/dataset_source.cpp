#include "data/dataset_source.h"

#include "core/error.h"
#include "core/fs.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <map>
#include <sstream>

namespace meddiff {

void DicomSelectParams::validate(const std::string& where) const {
  if (min_slices < 1) fail("config: '{}.min_slices' must be at least 1, got {}", where, min_slices);
  if (per_study != "all" && per_study != "most_slices")
    fail("config: '{}.per_study' must be all or most_slices, got '{}'", where, per_study);
}

void SourceParams::validate(const std::string& where) const {
  if (brats_sequences.empty()) fail("config: '{}.brats_sequences' must name at least one sequence", where);
  for (const auto& s : brats_sequences)
    if (s.empty() || s == brats_label) fail("config: '{}.brats_sequences' has an empty suffix or the label's ('{}')", where, s);
  if (brats_label.empty()) fail("config: '{}.brats_label' must not be empty", where);
  dicom.validate(where + ".dicom");
}

void apply_class_file(Manifest& m, const std::string& file, IndexReport& report) {
  std::map<std::string, int64_t> classes;
  const std::string text = read_text(file);
  if (full_extension(file) == "json") {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
      fail("{}: not valid JSON: {}", file, e.what());
    }
    if (!j.is_object()) fail("{}: expected an object {{\"case id\": class, ...}}", file);
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (!it->is_number_integer()) fail("{}: the class of '{}' must be an integer", file, it.key());
      classes[it.key()] = it->get<int64_t>();
    }
  } else {
    std::istringstream in(text);
    std::string line;
    int lineno = 0;
    while (std::getline(in, line)) {
      ++lineno;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) continue;
      auto comma = line.find(',');
      if (comma == std::string::npos) fail("{}: line {}: expected id,class", file, lineno);
      std::string id = line.substr(0, comma), cls = line.substr(comma + 1);
      if (lineno == 1 && id == "id") continue;  // header
      try {
        size_t pos = 0;
        classes[id] = std::stoll(cls, &pos);
        if (pos != cls.size()) throw std::invalid_argument(cls);
      } catch (...) {
        fail("{}: line {}: class '{}' is not an integer", file, lineno, cls);
      }
    }
  }
  std::vector<ManifestEntry> kept;
  for (auto& e : m.entries) {
    auto it = classes.find(e.id);
    if (it == classes.end()) {
      report.problems.push_back(fmt::format("{}: case {} left out: {} gives it no class", m.source, e.id, file));
      continue;
    }
    e.class_label = it->second;
    kept.push_back(e);
  }
  m.entries = std::move(kept);
}

}  // namespace meddiff
