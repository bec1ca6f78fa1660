#include "cli/training_data.h"

#include "core/error.h"
#include "core/log.h"
#include "core/text.h"
#include "core/threads.h"
#include "data/dataset_cache.h"
#include "data/manifest.h"
#include "io/dataset_index.h"
#include "io/volume_reader.h"

#include <algorithm>
#include <mutex>
#include <random>

namespace meddiff::cli {
namespace {

std::string case_name(const ManifestEntry& e) { return e.id.empty() ? e.image.string() : "case " + e.id; }

}  // namespace

Manifest training_cases(const std::string& source, const DataParams& p) {
  Manifest m = io::load_dataset(source, p.effective_source());
  const auto sel = select_channels(m, p.channels, "data.channels");
  const auto n = static_cast<size_t>(m.num_channels());
  std::vector<std::string> names;
  for (size_t c : sel) names.push_back(c < m.channel_names.size() ? m.channel_names[c] : n == 1 ? "image" : fmt::format("channel_{}", c));
  bool identity = sel.size() == n;
  for (size_t i = 0; i < sel.size(); ++i) identity = identity && sel[i] == i;
  if (!identity) {
    for (auto& e : m.entries) {
      const auto files = e.channel_files();
      e.channels.clear();
      for (size_t c : sel) e.channels.push_back(files.at(c));
      e.image = e.channels.front().path;
    }
  }
  if (n > 1 || !m.channel_names.empty()) m.channel_names = names;
  return m;
}

std::vector<Volume> read_case(const ManifestEntry& e, const DataParams& p) {
  io::ReadOptions ro;
  ro.modality = p.modality_enum();
  std::vector<Volume> out;
  for (const ChannelFile& channel : e.channel_files()) {  // channel_files() returns a copy: iterate the temporary's lifetime
    // DICOM series are read one at a time: their reader checks files in a child process (fork), which is safe only
    // while no other thread of this process is inside a library call
    static std::mutex dicom;
    std::unique_lock<std::mutex> one_dicom(dicom, std::defer_lock);
    if (io::format_of(channel.path) == io::Format::DicomSeries) one_dicom.lock();
    out.push_back(io::read_channel(channel, ro));
  }
  if (e.label) out.front().label = io::read_label_map(*e.label, out.front());
  return out;
}

std::vector<std::string> resolved_channels(const DataParams& p, const std::vector<std::string>& dataset_channels) {
  return dataset_channels.size() > 1 ? dataset_channels : p.channels;
}

void use_model_channels(DataParams& p, const std::vector<std::string>& model_channels, const std::string& model_path) {
  if (p.channels.empty()) {
    p.channels = model_channels;
    return;
  }
  bool same = p.channels.size() == model_channels.size() || (p.channels.size() == 1 && model_channels.empty());
  for (size_t i = 0; same && i < model_channels.size(); ++i) same = to_lower(p.channels[i]) == to_lower(model_channels[i]);
  if (!same)
    fail("config: 'data.channels' = [{}] but the VQ-GAN {} was trained on [{}]; leave data.channels empty to use the VQ-GAN's",
         fmt::join(p.channels, ", "), model_path, model_channels.empty() ? std::string("one channel") : fmt::format("{}", fmt::join(model_channels, ", ")));
}

TrainingSet load_training_set(const DataParams& p) {
  if (p.manifest.empty()) fail("config: 'data.manifest' is empty (a folder, glob, CSV or JSON list of volumes)");
  Manifest m = training_cases(p.manifest, p);
  if (p.label_conditioned()) {
    std::vector<std::string> without;
    for (const auto& e : m.entries)
      if (!e.label) without.push_back(case_name(e));
    if (!without.empty())
      fail("{}: {} case(s) have no label map (data.labels = condition needs a 'label' for every case): {}", p.manifest,
           without.size(), fmt::join(without.begin(), without.begin() + static_cast<std::ptrdiff_t>(std::min<size_t>(5, without.size())), ", "));
  }
  const size_t n = m.entries.size();
  auto make = [&](size_t i) {
    const auto& e = m.entries[i];
    TrainingVolume t = preprocess(read_case(e, p), p, e.class_label, e.image.string());
    if (e.label) t.label_source = e.label->string();
    return t;
  };
  std::vector<TrainingVolume> all;
  if (!p.cache.empty()) {
    CacheSpec spec;
    spec.dir = p.cache;
    spec.settings = p.record_settings();
    spec.shape = {std::max<int64_t>(1, m.num_channels()), p.shape[0], p.shape[1], p.shape[2]};
    for (const auto& e : m.entries) {
      nlohmann::json files = nlohmann::json::array();
      for (const auto& c : e.channel_files()) files.push_back({file_fingerprint(c.path), c.component, c.series_uid});
      spec.cases.push_back({{"files", files}, {"label", e.label ? file_fingerprint(*e.label) : nlohmann::json()}, {"class", e.class_label}});
    }
    all = cached_cases(spec, make, p.manifest);
  } else {  // read and preprocess on every core; every failing case goes into one error
    all.resize(n);
    for_each_case(n, "loading", p.manifest, n, [&](size_t i) { all[i] = make(i); });
  }
  std::vector<size_t> order(all.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::mt19937_64 rng(static_cast<uint64_t>(p.seed) * 7919 + 17);
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
  auto n_val = std::min<size_t>(static_cast<size_t>(p.val_max),
                                static_cast<size_t>(std::floor(p.val_fraction * static_cast<double>(all.size()))));
  if (n_val >= all.size()) n_val = all.size() - 1;
  TrainingSet s;
  for (size_t i = 0; i < order.size(); ++i) (i < n_val ? s.val : s.train).push_back(all[order[i]]);
  s.num_classes = m.num_classes();
  s.label_names = m.label_names;
  s.channel_names = m.channel_names;
  if (auto used = m.classes_used(); static_cast<int64_t>(used.size()) != s.num_classes) {
    std::vector<int64_t> unused;
    for (int64_t c = 0; c < s.num_classes; ++c)
      if (!std::binary_search(used.begin(), used.end(), c)) unused.push_back(c);
    log_warn("{}: the cases use classes {} of 0..{}: the model gets {} class embeddings, and those of {} are never trained "
             "(number the classes 0..K-1)",
             p.manifest, fmt::join(used, ", "), s.num_classes - 1, s.num_classes,
             unused.size() > 8 ? fmt::format("{} classes", unused.size()) : fmt::format("{}", fmt::join(unused, ", ")));
  }
  log_info("{}: {} training and {} validation volumes of {} x {} x {} voxels (x,y,z){}, {} class(es)", p.manifest, s.train.size(),
           s.val.size(), p.shape[2], p.shape[1], p.shape[0],
           s.channel_names.size() > 1 ? fmt::format(" x {} channels ({})", s.channel_names.size(), fmt::join(s.channel_names, ", ")) : "",
           s.num_classes);
  return s;
}

CaseCount count_cases(const DataParams& p) {
  try {
    Manifest m = training_cases(p.manifest, p);
    if (!m.entries.empty()) {
      const auto& e = m.entries.front();
      preprocess(read_case(e, p), p, e.class_label, e.image.string());
    }
    return {static_cast<int64_t>(m.entries.size()), std::max<int64_t>(1, m.num_classes()), m.channel_names};
  } catch (const Error& e) {
    log_info("dry run: the data is not readable yet ({}); the estimate leaves the training set out", e.what());
    return {};
  }
}

}  // namespace meddiff::cli
