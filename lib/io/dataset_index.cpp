#include "io/dataset_index.h"

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/threads.h"
#include "data/manifest.h"
#include "io/payload_scan.h"

#include <fmt/format.h>

namespace meddiff::io {
namespace fs = std::filesystem;

namespace {

bool holds_image_files(const fs::path& dir) {
  std::error_code ec;
  for (const auto& f : fs::directory_iterator(dir, ec))
    if (f.is_regular_file() && has_image_extension(f.path())) return true;
  return false;
}

// The NIfTI files of every case checked quickly in parallel (io/payload_scan.h: header, recorded length); a case
// with a corrupt or truncated file is left out with one problem line naming the file.
void leave_out_corrupt(Manifest& m, const std::vector<std::string>& where, const std::string& source, IndexReport& report) {
  std::vector<std::string> error(m.entries.size());
  parallel_for(m.entries.size(), 0, [&](size_t i) {
    const auto& e = m.entries[i];
    std::vector<fs::path> files;
    for (const auto& c : e.channel_files()) files.push_back(c.path);
    if (e.label) files.push_back(*e.label);
    std::error_code ec;
    for (size_t k = 0; k < files.size(); ++k) {
      const auto ext = full_extension(files[k]);
      if ((ext != "nii" && ext != "nii.gz") || !fs::is_regular_file(files[k], ec)) continue;
      if (k > 0 && files[k] == files[k - 1]) continue;  // one 4-D file for every channel
      try {
        check_nifti_quickly(files[k]);
      } catch (const std::exception& ex) {
        error[i] = ex.what();
        return;
      }
    }
  });
  std::vector<ManifestEntry> kept;
  for (size_t i = 0; i < m.entries.size(); ++i) {
    if (error[i].empty()) kept.push_back(std::move(m.entries[i]));
    else report.problems.push_back(fmt::format("{}: {}: {}", source, where[i], error[i]));
  }
  m.entries = std::move(kept);
}

}  // namespace

IndexedDataset index_dataset(const std::string& source, const SourceParams& p) {
  IndexedDataset out;
  const fs::path path(source);
  std::unique_ptr<DatasetSource> chosen;
  if (fs::is_directory(path) && !holds_image_files(path)) {
    std::vector<std::unique_ptr<DatasetSource>> sources;
    sources.push_back(make_nnunet_source());
    sources.push_back(make_msd_source());
    sources.push_back(make_brats_source());
    sources.push_back(make_dicom_tree_source());
    for (auto& s : sources)
      if (s->recognises(path)) {
        chosen = std::move(s);
        break;
      }
  }
  if (chosen) {
    out.manifest = chosen->index(path, p, out.report);
  } else {
    out.manifest = load_manifest(source);  // a folder of image files, a glob, a CSV or a JSON manifest
  }
  if (!p.classes.empty()) apply_class_file(out.manifest, p.classes, out.report);
  std::vector<std::string> where;
  for (size_t i = 0; i < out.manifest.entries.size(); ++i) {
    const auto& e = out.manifest.entries[i];
    where.push_back(e.id.empty() ? e.image.string() : fmt::format("case {}", e.id));
  }
  for (auto& problem : entry_problems(out.manifest.entries, where)) out.report.problems.push_back(source + ": " + problem);
  leave_out_corrupt(out.manifest, where, source, out.report);
  if (out.manifest.entries.empty()) {
    std::string why;
    if (!out.report.problems.empty()) why = fmt::format(" ({} problem(s), the first: {})", out.report.problems.size(), out.report.problems.front());
    else if (!out.report.skipped.empty()) why = fmt::format(" ({} DICOM series left out by data.source.dicom, the first: {})", out.report.skipped.size(), out.report.skipped.front());
    else if (chosen && chosen->layout() == "DICOM tree") why = " (no image files, dataset.json, BraTS case folders or DICOM series below it)";
    fail("{}: no cases{}", source, why);
  }
  return out;
}

Manifest load_dataset(const std::string& source, const SourceParams& p) {
  auto d = index_dataset(source, p);
  if (!d.report.problems.empty())
    fail("{}: {} problem(s) (`meddiff index {}` lists them; with --out it writes a manifest of the usable cases): {}", source,
         d.report.problems.size(), source, fmt::join(d.report.problems, "; "));
  if (!d.report.skipped.empty())
    log_info("{}: {} DICOM series left out by data.source.dicom (`meddiff index {}` lists why)", source, d.report.skipped.size(), source);
  if (!d.report.unreadable.empty())
    log_warn("{}: {} file(s) look like DICOM but cannot be parsed, the first: {}", source, d.report.unreadable.size(),
             d.report.unreadable.front());
  if (d.manifest.layout != "list")
    log_info("{}: {} layout, {} case(s), channels {}", source, d.manifest.layout, d.manifest.entries.size(),
             d.manifest.channel_names.empty() ? std::string("image") : fmt::format("{}", fmt::join(d.manifest.channel_names, ", ")));
  return d.manifest;
}

}  // namespace meddiff::io
