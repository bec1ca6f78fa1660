#include "cli/eval_sets.h"

#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "cli/training_data.h"
#include "core/log.h"
#include "data/ras_axes.h"
#include "data/spatial.h"
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
    fs::path label_dicom;
    std::vector<fs::path> nifti, dicom;  // the channels, in the order sample wrote them
    for (const auto& f : j["files"]) {
      if (!f.is_string()) continue;
      const std::string s = f.get<std::string>();
      const fs::path p = jsonl.parent_path() / s;
      const bool label = s.rfind("labelsTr/", 0) == 0 || s.find("_label.") != std::string::npos;
      if (ends_with(s, "_label_dicom")) label_dicom = p;
      else if (ends_with(s, "_dicom")) dicom.push_back(p);
      else if (has_image_extension(p) && label) e.label = p;
      else if (has_image_extension(p)) nifti.push_back(p);
    }
    const auto& images = nifti.empty() ? dicom : nifti;
    if (images.empty()) fail("{}: line {} lists no NIfTI or DICOM volume", jsonl.string(), n);
    e.image = images.front();
    if (images.size() > 1)
      for (const auto& p : images) e.channels.push_back(ChannelFile{p, -1, ""});
    if (!e.label && !label_dicom.empty()) e.label = label_dicom;
    out.push_back(e);
  }
  return out;
}

}  // namespace

std::vector<ManifestEntry> eval_entries(const std::string& source, const std::string& what, const DataParams& p) {
  fs::path src = source;
  std::vector<ManifestEntry> entries;
  if (fs::is_directory(src) && fs::exists(src / "manifest.jsonl"))
    entries = sample_manifest(src / "manifest.jsonl");
  else if (src.extension() == ".jsonl")
    entries = sample_manifest(src);
  else {
    std::string m = source;
    if (fs::is_directory(src) && fs::exists(src / "manifest.json")) m = (src / "manifest.json").string();
    for (const auto& e : training_cases(m, p).entries) {
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

TrainingVolume load_eval_volume(const ManifestEntry& e, const DataParams& p) {
  auto channels = read_case(e, p);
  if (static_cast<int64_t>(channels.size()) != p.image_channels())
    fail("{}: {} channel(s), the VQ-GAN takes {}{}", e.image.string(), channels.size(), p.image_channels(),
         p.channels.empty() ? std::string() : fmt::format(" ({})", fmt::join(p.channels, ", ")));
  auto t = preprocess(channels, p, e.class_label, e.image.string());
  if (!torch::isfinite(t.x).all().item<bool>()) fail("{}: holds NaN or infinite values", e.image.string());
  if (e.label) t.label_source = e.label->string();
  return t;
}

std::array<int64_t, 3> imported_eval_grid(const std::string& source, const DataParams& p, const std::array<int64_t, 3>& shape,
                                          int64_t factor) {
  auto round_up = [&](int64_t v) { return (v + factor - 1) / factor * factor; };
  if (shape[0] > 0) {
    for (auto v : shape)
      if (v % factor != 0)
        usage_fail("--shape {},{},{}: each size must be a multiple of {} (the imported autoencoder's downsampling)", shape[2],
                   shape[1], shape[0], factor);
    return shape;
  }
  const auto entries = eval_entries(source, "real", p);
  Volume v = read_case(entries.front(), p).front();
  if (p.spacing[0] > 0) v = resample_to_spacing(v, p.spacing);
  const std::array<int64_t, 3> grid{round_up(v.depth()), round_up(v.height()), round_up(v.width())};
  log_info("eval: every volume is prepared on a {} x {} x {} grid (x, y, z: the first --real volume's, {}, rounded up to "
           "multiples of {}; --shape sets another)",
           grid[2], grid[1], grid[0], entries.front().image.filename().string(), factor);
  return grid;
}

SetSummary summarise_set(const std::string& source, const DataParams& p, const std::string& what, const SummaryOptions& o) {
  SetSummary s;
  s.entries = eval_entries(source, what, p);
  std::vector<torch::Tensor> lf, lat, nf;
  std::vector<std::string> problems;
  s.histogram = torch::zeros({o.bins}, torch::kDouble);
  Progress progress(what, static_cast<int64_t>(s.entries.size()));
  int64_t done = 0;
  for (const auto& e : s.entries) {
    progress.update(done++);
    TrainingVolume v;
    try {
      v = load_eval_volume(e, p);
    } catch (const Error& err) {
      problems.push_back(err.what());
      continue;
    }
    if (!problems.empty()) continue;  // only reading the rest, to report every bad file at once
    auto f = latent_features(*o.autoencoder, o.network_xyz ? to_ras_xyz(v.x, ras_axes(v.geometry)) : v.x, o.run, o.device);
    if (o.keep_latents && !lat.empty() && f.latent.sizes() != lat.front().sizes())
      fail("{}: its axes lie otherwise than those of {} (latent {} vs {} in MONAI's RAS layout): the memorisation audit "
           "compares latents on one grid; give volumes of one orientation", e.image.string(), s.entries.front().image.string(),
           fmt::format("{}", fmt::join(f.latent.sizes(), "x")), fmt::format("{}", fmt::join(lat.front().sizes(), "x")));
    lf.push_back(f.feature);
    if (o.keep_latents) lat.push_back(f.latent);
    if (o.net) {
      auto r = o.net->features(v.x, o.net_input);
      nf.push_back(r.feature);
      if (o.net->slice_wise())
        for (size_t a = 0; a < 3; ++a) s.planes[a].add(r.planes[a]);
    }
    s.histogram += torch::histc(v.x.to(torch::kDouble), o.bins, -1, 1);
    if (v.label.defined()) {
      auto u = o.units(v.x[0].to(torch::kDouble));
      s.labels.add(u, v.label);
      s.labels_by_class[v.class_label].add(u, v.label);
    }
    if (o.audit_grid) s.audit.push_back(o.audit_grid(v.x).to(torch::kFloat));
  }
  progress.finish();
  if (!problems.empty())
    fail("{}: {} of {} --{} volumes cannot be used: {}", source, problems.size(), s.entries.size(), what,
         fmt::format("{}", fmt::join(problems, "; ")));
  s.latent_features = torch::stack(lf);
  if (o.keep_latents) s.latents = torch::stack(lat);
  if (o.net) s.net_features = torch::stack(nf);
  return s;
}

}  // namespace meddiff::cli
