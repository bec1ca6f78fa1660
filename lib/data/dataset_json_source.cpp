// Datasets described by a dataset.json: nnU-Net v2 raw folders and MSD task folders (also nnU-Net v1 raw).
//   nnU-Net v2: {"channel_names": {"0": "T2", "1": "ADC"}, "labels": {"background": 0, "PZ": 1}, "file_ending": ".nii.gz"};
//               the cases are the files imagesTr/CASE_XXXX<ending> (XXXX the channel), labels labelsTr/CASE<ending>.
//   MSD:        {"modality": {"0": "FLAIR", ...}, "labels": {"0": "background", ...}, "training": [{"image", "label"}]};
//               a case's image is 4-D with one component per channel (3-D when there is one channel); nnU-Net v1
//               keeps the same dataset.json with the image split into CASE_XXXX files.
#include "core/error.h"
#include "core/fs.h"
#include "data/dataset_source.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <set>

namespace meddiff {
namespace {

nlohmann::json read_dataset_json(const fs::path& dir) {
  fs::path f = dir / "dataset.json";
  try {
    return nlohmann::json::parse(read_text(f));
  } catch (const nlohmann::json::parse_error& e) {
    fail("{}: not valid JSON: {}", f.string(), e.what());
  }
}

// {"0": "T2", "1": "ADC"} -> ["T2", "ADC"]; the keys must be 0..C-1.
std::vector<std::string> indexed_names(const nlohmann::json& j, const fs::path& file, const char* key) {
  if (!j.contains(key) || !j[key].is_object() || j[key].empty())
    fail("{}: '{}' must be an object {{\"0\": name, ...}}", file.string(), key);
  std::map<int64_t, std::string> byindex;
  for (auto it = j[key].begin(); it != j[key].end(); ++it) {
    int64_t k = -1;
    try {
      size_t pos = 0;
      k = std::stoll(it.key(), &pos);
      if (pos != it.key().size()) k = -1;
    } catch (...) {
    }
    if (k < 0 || !it->is_string()) fail("{}: '{}' has the entry \"{}\": expected \"index\": \"name\"", file.string(), key, it.key());
    byindex[k] = it->get<std::string>();
  }
  std::vector<std::string> out;
  for (const auto& [k, name] : byindex) {
    if (k != static_cast<int64_t>(out.size())) fail("{}: '{}' must number its entries 0, 1, ..., without gaps", file.string(), key);
    out.push_back(name);
  }
  return out;
}

// Label value -> name, from {"background": 0, "PZ": 1} (nnU-Net v2; region entries with lists are left
// out) or {"0": "background", "1": "PZ"} (MSD). Values without a name get label_<v>.
std::vector<std::string> label_names_of(const nlohmann::json& j) {
  std::map<int64_t, std::string> byvalue;
  if (!j.contains("labels") || !j["labels"].is_object()) return {};
  for (auto it = j["labels"].begin(); it != j["labels"].end(); ++it) {
    if (it->is_number_integer()) byvalue[it->get<int64_t>()] = it.key();
    else if (it->is_string()) {
      try {
        byvalue[std::stoll(it.key())] = it->get<std::string>();
      } catch (...) {
      }
    }
  }
  if (byvalue.empty() || byvalue.begin()->first < 0 || byvalue.rbegin()->first > 255) return {};
  std::vector<std::string> out(static_cast<size_t>(byvalue.rbegin()->first + 1));
  for (size_t v = 0; v < out.size(); ++v) out[v] = fmt::format("label_{}", v);
  for (const auto& [v, name] : byvalue) out[static_cast<size_t>(v)] = name;
  return out;
}

// "CASE_0003.nii.gz" with ending ".nii.gz" -> {"CASE", 3}; {"", -1} when the name is not of that form.
std::pair<std::string, int64_t> split_channel_name(const std::string& name, const std::string& ending) {
  if (name.size() <= ending.size() + 5 || name.compare(name.size() - ending.size(), ending.size(), ending) != 0) return {"", -1};
  std::string stem = name.substr(0, name.size() - ending.size());
  std::string digits = stem.substr(stem.size() - 4);
  if (stem[stem.size() - 5] != '_' || !std::all_of(digits.begin(), digits.end(), ::isdigit)) return {"", -1};
  return {stem.substr(0, stem.size() - 5), std::stoll(digits)};
}

// A folder with a dataset.json whose keys say which layout it is; the channel names under channels_key().
class DatasetJsonSource : public DatasetSource {
 public:
  bool recognises(const fs::path& path) const override {
    if (!fs::is_regular_file(path / "dataset.json")) return false;
    try {
      return describes(read_dataset_json(path));
    } catch (const Error&) {
      return false;
    }
  }
  Manifest index(const fs::path& dir, const SourceParams&, IndexReport& report) const override {
    auto j = read_dataset_json(dir);
    Manifest m;
    m.source = dir.string();
    m.layout = layout();
    m.channel_names = indexed_names(j, dir / "dataset.json", channels_key());
    m.label_names = label_names_of(j);
    add_cases(dir, j, m, report);
    return m;
  }

 protected:
  virtual bool describes(const nlohmann::json& j) const = 0;
  virtual const char* channels_key() const = 0;
  virtual void add_cases(const fs::path& dir, const nlohmann::json& j, Manifest& m, IndexReport& report) const = 0;
};

class NnUNetSource : public DatasetJsonSource {
 public:
  std::string layout() const override { return "nnU-Net raw"; }

 protected:
  bool describes(const nlohmann::json& j) const override { return j.contains("channel_names"); }
  const char* channels_key() const override { return "channel_names"; }
  void add_cases(const fs::path& dir, const nlohmann::json& j, Manifest& m, IndexReport& report) const override {
    const fs::path file = dir / "dataset.json";
    std::string ending = j.value("file_ending", std::string(".nii.gz"));
    if (!has_image_extension("x" + ending))
      fail("{}: file_ending \"{}\" is not a volume format meddiff reads (.nii.gz, .nii, .nrrd, .mha, .mhd)", file.string(), ending);
    const fs::path images = dir / "imagesTr", labels = dir / "labelsTr";
    if (!fs::is_directory(images)) fail("{}: no imagesTr folder", dir.string());
    std::map<std::string, std::map<int64_t, fs::path>> cases;
    for (const auto& f : fs::directory_iterator(images)) {
      auto name = f.path().filename().string();
      if (!f.is_regular_file() || name.rfind("._", 0) == 0) continue;  // macOS resource forks
      auto [id, ch] = split_channel_name(name, ending);
      if (ch < 0) {
        if (name.size() > ending.size() && name.compare(name.size() - ending.size(), ending.size(), ending) == 0)
          report.problems.push_back(fmt::format("{}: not named CASE_XXXX{} (XXXX: the channel number)", f.path().string(), ending));
        continue;
      }
      cases[id][ch] = f.path();
    }
    const auto n = static_cast<int64_t>(m.channel_names.size());
    for (const auto& [id, files] : cases) {
      std::vector<std::string> missing;
      for (int64_t c = 0; c < n; ++c)
        if (!files.count(c)) missing.push_back(fmt::format("{}_{:04d}{}", id, c, ending));
      for (const auto& [c, p] : files)
        if (c >= n) missing.push_back(fmt::format("{} is channel {}, dataset.json has {}", p.filename().string(), c, n));
      if (!missing.empty()) {
        report.problems.push_back(fmt::format("{}: case {} left out: missing {}", images.string(), id, fmt::join(missing, "; ")));
        continue;
      }
      ManifestEntry e;
      e.id = id;
      for (const auto& [c, p] : files) e.channels.push_back({p, -1, ""});
      e.image = e.channels.front().path;
      fs::path label = labels / (id + ending);
      if (fs::exists(label)) e.label = label;
      else if (fs::is_directory(labels)) {
        report.problems.push_back(fmt::format("{}: case {} left out: no label map {}", dir.string(), id, label.string()));
        continue;
      }
      m.entries.push_back(e);
    }
  }
};

class MsdSource : public DatasetJsonSource {
 public:
  std::string layout() const override { return "MSD"; }

 protected:
  bool describes(const nlohmann::json& j) const override { return j.contains("training") && j.contains("modality"); }
  const char* channels_key() const override { return "modality"; }
  void add_cases(const fs::path& dir, const nlohmann::json& j, Manifest& m, IndexReport& report) const override {
    const fs::path file = dir / "dataset.json";
    if (!j["training"].is_array()) fail("{}: 'training' must be a list of {{\"image\", \"label\"}}", file.string());
    const auto n = static_cast<int64_t>(m.channel_names.size());
    for (size_t i = 0; i < j["training"].size(); ++i) {
      const auto& c = j["training"][i];
      if (!c.is_object() || !c.contains("image") || !c["image"].is_string()) {
        report.problems.push_back(fmt::format("{}: training[{}] has no \"image\" path", file.string(), i));
        continue;
      }
      fs::path image = (dir / c["image"].get<std::string>()).lexically_normal();
      std::string ending = "." + full_extension(image);
      std::string name = image.filename().string();
      std::string id = name.substr(0, name.size() - ending.size());
      ManifestEntry e;
      e.id = id;
      if (fs::exists(image)) {  // MSD: one file; 4-D when there are several channels
        for (int64_t k = 0; k < n; ++k) e.channels.push_back({image, n > 1 ? k : -1, ""});
      } else {  // nnU-Net v1: the channels in CASE_XXXX files beside where the 4-D file would be
        std::vector<std::string> missing;
        for (int64_t k = 0; k < n; ++k) {
          fs::path split = image.parent_path() / fmt::format("{}_{:04d}{}", id, k, ending);
          if (fs::exists(split)) e.channels.push_back({split, -1, ""});
          else missing.push_back(split.filename().string());
        }
        if (!missing.empty()) {
          report.problems.push_back(fmt::format("{}: case {} left out: neither {} nor {} exist", dir.string(), id, image.string(),
                                                fmt::join(missing, ", ")));
          continue;
        }
      }
      e.image = e.channels.front().path;
      if (c.contains("label") && c["label"].is_string()) {
        fs::path label = (dir / c["label"].get<std::string>()).lexically_normal();
        if (!fs::exists(label)) {
          report.problems.push_back(fmt::format("{}: case {} left out: no label map {}", dir.string(), id, label.string()));
          continue;
        }
        e.label = label;
      }
      m.entries.push_back(e);
    }
  }
};

}  // namespace

std::unique_ptr<DatasetSource> make_nnunet_source() { return std::make_unique<NnUNetSource>(); }
std::unique_ptr<DatasetSource> make_msd_source() { return std::make_unique<MsdSource>(); }

}  // namespace meddiff
