#pragma once
// `meddiff eval`'s memorisation audit: for every synthetic volume, its nearest training volume by
// normalised cross-correlation of the detail band (data/nearest_volume.h), judged against the same
// numbers of held-out real scans, which were not trained on. The held-out set must therefore not
// overlap the training set: check_held_out refuses real volumes that are training volumes (the same
// file, or the same voxels), which would calibrate the rule on copies and let every copy pass.
#include "cli/eval_sets.h"

#include <nlohmann/json.hpp>

#include <utility>
#include <vector>

namespace meddiff::cli {

// An error naming the overlapping cases when a held-out volume is a training volume (same file or
// identical audit grid); a warning for held-out volumes almost equal to a training volume.
void check_held_out(const SetSummary& real, const SetSummary& train);

struct AuditResult {
  nlohmann::json json;                              // eval.json's "memorisation"
  std::vector<std::pair<double, size_t>> ranked;    // synthetic volumes by distance ratio, most copy-like first
  std::vector<int64_t> nearest;                     // per synthetic volume: its nearest training volume
};

// `train.audit` is consumed (moved into the index).
AuditResult memorisation_audit(const SetSummary& real, const SetSummary& synth, SetSummary& train, int64_t max_shift);

// {n, mean, min, median, max} of values.
nlohmann::json summary_of(std::vector<double> v);

}  // namespace meddiff::cli
