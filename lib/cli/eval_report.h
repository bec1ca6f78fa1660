#pragma once
// report.md of `meddiff eval`: every number of eval.json in tables with what it means, the plots
// linked. Built from eval.json (and the VQ-GAN's path as given), so the report never says anything
// eval.json does not.
#include <nlohmann/json.hpp>

#include <string>

namespace meddiff::cli {

// `closest`: how many closest-pair panels (closest_N.png) were written.
std::string eval_report_markdown(const nlohmann::json& eval, const std::string& vqgan_path, size_t closest);

}  // namespace meddiff::cli
