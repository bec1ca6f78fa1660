#include "cli/eval_downstream.h"

#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"

#include <algorithm>

namespace meddiff::cli {

namespace {

// The set's cases that have label maps (prepared); `limit` > 0 keeps the first `limit`.
std::vector<SegCase> labelled_cases(const std::vector<ManifestEntry>& entries, const DataParams& data, const std::string& what,
                                    int64_t limit = 0) {
  std::vector<SegCase> out;
  for (const auto& e : entries) {
    if (!e.label) continue;
    if (limit > 0 && static_cast<int64_t>(out.size()) >= limit) break;
    TrainingVolume v = load_eval_volume(e, data);
    if (!v.label.defined()) continue;
    out.push_back({v.x, v.label, v.geometry.spacing, e.image.filename().string()});
  }
  if (out.empty()) fail("--downstream seg: the {} set has no volumes with label maps", what);
  return out;
}

int64_t labels_in(const std::vector<SegCase>& set) {
  int64_t k = 0;
  for (const auto& c : set) k = std::max(k, c.label.max().item<int64_t>() + 1);
  return k;
}

}  // namespace

nlohmann::json downstream_check(const EvalRequest& q, const SetSummary& real, const SetSummary& synthetic, const DataParams& data,
                                const torch::Device& device) {
  const std::string train_src = !q.seg_train.empty() ? q.seg_train : q.train;
  auto held_out = labelled_cases(real.entries, data, "--real (held-out)");
  auto train = labelled_cases(eval_entries(train_src, "segmenter training", data), data, "segmenter training", q.seg_cases);
  auto synth = labelled_cases(synthetic.entries, data, "--synthetic");
  const int64_t K = std::max({static_cast<int64_t>(data.label_names.size()), labels_in(held_out), labels_in(train), labels_in(synth)});
  const int64_t runs = q.seg.seeds * 3;
  log_info("eval --downstream seg: {} real training case(s), {} synthetic pair(s), {} held-out case(s), {} labels; {} training runs "
           "of {} iterations",
           train.size(), synth.size(), held_out.size(), K, runs, q.seg.iterations);
  Progress progress("downstream segmentation runs", runs);
  int64_t done = 0;
  auto j = downstream_segmentation(train, synth, held_out, K, data.label_names, q.seg, device,
                                   [&](const std::string&) { progress.update(done++); });
  progress.update(runs);
  progress.finish();
  j["inputs"] = {{"segmenter_training", train_src}, {"cases_used", train.size()}};
  if (!j["hurt"].empty()) log_warn("eval --downstream seg: {}", j["summary"].get<std::string>());
  else log_info("eval --downstream seg: {}", j["summary"].get<std::string>());
  return j;
}

}  // namespace meddiff::cli
