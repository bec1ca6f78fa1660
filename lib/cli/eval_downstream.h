#pragma once
// `meddiff eval --downstream seg`: the cases of the downstream segmentation check read from the eval's
// sets (every volume prepared with the VQ-GAN's data settings, with its label map), then the check
// itself (pipeline/downstream_seg.h).
#include "cli/eval_request.h"
#include "cli/eval_sets.h"

#include <nlohmann/json.hpp>

namespace meddiff::cli {

// eval.json's "downstream". `label_names` from the VQ-GAN's data settings (may be empty).
nlohmann::json downstream_check(const EvalRequest& q, const SetSummary& real, const SetSummary& synthetic, const DataParams& data,
                                const torch::Device& device);

}  // namespace meddiff::cli
