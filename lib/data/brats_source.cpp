// BraTS-style datasets: a folder of case folders, each holding one file per sequence, named
// <anything>_<sequence>.nii.gz or <anything>-<sequence>.nii.gz (BraTS 2021: BraTS2021_00000_flair.nii.gz; BraTS
// 2023: BraTS-GLI-00000-000-t2f.nii.gz), and the segmentation <anything>_seg.nii.gz. The sequence suffixes are
// data.source.brats_sequences (BraTS 2021's by default); a case without a segmentation (a validation case) has no
// label map.
#include "core/error.h"
#include "core/fs.h"
#include "core/text.h"
#include "data/dataset_source.h"

#include <fmt/format.h>

#include <algorithm>

namespace meddiff {
namespace {

// The file name without its image extension, lower case ("BraTS2021_00000_flair.nii.gz" -> "brats2021_00000_flair").
std::string image_stem(const fs::path& p) {
  std::string name = p.filename().string();
  return to_lower(name.substr(0, name.size() - full_extension(p).size() - 1));
}

bool has_suffix(const std::string& stem, const std::string& suffix) {
  const std::string s = to_lower(suffix);
  if (stem.size() <= s.size() + 1 || stem.compare(stem.size() - s.size(), s.size(), s) != 0) return false;
  char sep = stem[stem.size() - s.size() - 1];
  return sep == '_' || sep == '-';
}

std::vector<fs::path> images_in(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& f : fs::directory_iterator(dir, ec))
    if (f.is_regular_file() && has_image_extension(f.path()) && f.path().filename().string().rfind("._", 0) != 0)
      out.push_back(f.path());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<fs::path> case_folders(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& f : fs::directory_iterator(dir))
    if (f.is_directory()) out.push_back(f.path());
  std::sort(out.begin(), out.end());
  return out;
}

class BratsSource : public DatasetSource {
 public:
  std::string layout() const override { return "BraTS"; }
  // A folder without image files of its own whose first case folders hold a *seg / *_flair / *-t2f style file.
  bool recognises(const fs::path& path) const override {
    if (!fs::is_directory(path) || fs::exists(path / "dataset.json") || !images_in(path).empty()) return false;
    size_t looked = 0;
    for (const auto& c : case_folders(path)) {
      for (const auto& f : images_in(c)) {
        auto stem = image_stem(f);
        for (const char* s : {"seg", "flair", "t1ce", "t2f", "t1c", "t1n", "t2w"})
          if (has_suffix(stem, s)) return true;
      }
      if (++looked == 8) break;
    }
    return false;
  }
  Manifest index(const fs::path& dir, const SourceParams& p, IndexReport& report) const override {
    Manifest m;
    m.source = dir.string();
    m.layout = layout();
    m.channel_names = p.brats_sequences;
    for (const auto& c : case_folders(dir)) {
      const auto files = images_in(c);
      if (files.empty()) continue;  // not a case folder
      ManifestEntry e;
      e.id = c.filename().string();
      std::vector<std::string> missing;
      auto find = [&](const std::string& suffix) -> std::vector<fs::path> {
        std::vector<fs::path> hits;
        for (const auto& f : files)
          if (has_suffix(image_stem(f), suffix)) hits.push_back(f);
        return hits;
      };
      for (const auto& s : p.brats_sequences) {
        auto hits = find(s);
        if (hits.size() == 1) e.channels.push_back({hits.front(), -1, ""});
        else missing.push_back(hits.empty() ? fmt::format("no *_{} file", s)
                                            : fmt::format("{} files end in _{}", hits.size(), s));
      }
      if (!missing.empty()) {
        std::string hint;
        if (find("t2f").size() == 1 && find("flair").empty())
          hint = " (BraTS 2023 names: set data.source.brats_sequences to [\"t1n\",\"t1c\",\"t2w\",\"t2f\"])";
        report.problems.push_back(fmt::format("{}: case left out: {}{}", c.string(), fmt::join(missing, ", "), hint));
        continue;
      }
      e.image = e.channels.front().path;
      auto seg = find(p.brats_label);
      if (seg.size() == 1) e.label = seg.front();
      else if (seg.size() > 1) {
        report.problems.push_back(fmt::format("{}: case left out: {} files end in _{}", c.string(), seg.size(), p.brats_label));
        continue;
      }
      m.entries.push_back(e);
    }
    return m;
  }
};

}  // namespace

std::unique_ptr<DatasetSource> make_brats_source() { return std::make_unique<BratsSource>(); }

}  // namespace meddiff
