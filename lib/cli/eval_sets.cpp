#include "cli/eval_sets.h"

#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "io/volume_reader.h"

#include <nlohmann/json.hpp>

#include <fstream>

namespace meddiff::cli {
namespace {
namespace fs = std::filesystem;

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// The image and label map of one line of a sample folder's manifest.jsonl (paths relative to the folder).
std::vector<ManifestEntry> sample_manifest(const fs::path& jsonl) {
  std::ifstream in(jsonl);
  if (!in) fail("{}: cannot be read", jsonl.string());
  std::vector<ManifestEntry> out;
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("files") || !j["files"].is_array())
      fail("{}: line {} is not a sample record (no \"files\")", jsonl.string(), n);
    ManifestEntry e;
    e.class_label = j.value("class", int64_t{0});
    fs::path dicom, label_dicom;
    for (const auto& f : j["files"]) {
      if (!f.is_string()) continue;
      const std::string s = f.get<std::string>();
      const fs::path p = jsonl.parent_path() / s;
      const bool label = s.rfind("labelsTr/", 0) == 0 || s.find("_label.") != std::string::npos;
      if (ends_with(s, "_label_dicom")) label_dicom = p;
      else if (ends_with(s, "_dicom")) dicom = p;
      else if (has_image_extension(p) && label) e.label = p;
      else if (has_image_extension(p)) e.image = p;
    }
    if (e.image.empty()) e.image = dicom;
    if (!e.label && !label_dicom.empty()) e.label = label_dicom;
    if (e.image.empty()) fail("{}: line {} lists no NIfTI or DICOM volume", jsonl.string(), n);
    out.push_back(e);
  }
  return out;
}

}  // namespace

std::vector<ManifestEntry> eval_entries(const std::string& source, const std::string& what) {
  fs::path src = source;
  std::vector<ManifestEntry> entries;
  if (fs::is_directory(src) && fs::exists(src / "manifest.jsonl"))
    entries = sample_manifest(src / "manifest.jsonl");
  else if (src.extension() == ".jsonl")
    entries = sample_manifest(src);
  else {
    std::string m = source;
    if (fs::is_directory(src) && fs::exists(src / "manifest.json")) m = (src / "manifest.json").string();
    for (const auto& e : load_manifest(m).entries) {
      const std::string name = e.image.filename().string();
      if (name.find("_label.") != std::string::npos) continue;  // a label map, paired below
      ManifestEntry x = e;
      if (!x.label && fs::is_regular_file(x.image)) {
        auto dot = name.find('.');
        fs::path sibling = x.image.parent_path() / (name.substr(0, dot) + "_label" + (dot == std::string::npos ? "" : name.substr(dot)));
        if (fs::is_regular_file(sibling)) x.label = sibling;
      }
      entries.push_back(x);
    }
  }
  if (entries.size() < 2) fail("{}: --{} needs at least 2 volumes (found {})", source, what, entries.size());
  return entries;
}

std::vector<TrainingVolume> load_eval_set(const std::string& source, const DataParams& p, const std::string& what) {
  auto entries = eval_entries(source, what);
  io::ReadOptions ro;
  ro.modality = p.modality_enum();
  std::vector<TrainingVolume> out;
  std::vector<std::string> problems;
  Progress progress("reading " + what, static_cast<int64_t>(entries.size()));
  for (const auto& e : entries) {
    try {
      Volume v = io::read_volume(e.image, ro);
      if (e.label) v.label = io::read_label_map(*e.label, v);
      auto t = preprocess(v, p, e.class_label, e.image.string());
      if (!torch::isfinite(t.x).all().item<bool>()) fail("{}: holds NaN or infinite values", e.image.string());
      if (e.label) t.label_source = e.label->string();
      out.push_back(std::move(t));
    } catch (const Error& err) {
      problems.push_back(err.what());
    }
    progress.update(static_cast<int64_t>(out.size() + problems.size()));
  }
  progress.finish();
  if (!problems.empty())
    fail("{}: {} of {} --{} volumes cannot be used: {}", source, problems.size(), entries.size(), what,
         fmt::format("{}", fmt::join(problems, "; ")));
  return out;
}

}  // namespace meddiff::cli
