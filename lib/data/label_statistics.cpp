#include "data/label_statistics.h"

#include <cmath>

namespace meddiff {

std::vector<LabelStatistics> label_statistics(const std::vector<TrainingVolume>& volumes, int64_t num_labels,
                                              const std::function<torch::Tensor(const torch::Tensor&)>& to_units,
                                              int64_t min_voxels) {
  std::vector<LabelStatistics> out(static_cast<size_t>(std::max<int64_t>(0, num_labels)));
  std::vector<std::vector<double>> medians(out.size()), fractions(out.size());
  for (const auto& v : volumes) {
    if (!v.label.defined()) continue;
    auto x = to_units(v.x[0].to(torch::kDouble)).flatten();
    auto l = v.label.flatten();
    for (int64_t k = 0; k < num_labels; ++k) {
      auto inside = x.masked_select(l == k);
      if (inside.numel() < min_voxels) continue;
      // the lower median (torch's definition), so it is a value of the volume
      medians[static_cast<size_t>(k)].push_back(inside.median().item<double>());
      fractions[static_cast<size_t>(k)].push_back(static_cast<double>(inside.numel()) / static_cast<double>(l.numel()));
    }
  }
  for (size_t k = 0; k < out.size(); ++k) {
    auto& s = out[k];
    s.label = static_cast<int64_t>(k);
    const auto& m = medians[k];
    s.volumes = static_cast<int64_t>(m.size());
    if (m.empty()) continue;
    double sum = 0, fsum = 0;
    for (size_t i = 0; i < m.size(); ++i) sum += m[i], fsum += fractions[k][i];
    s.median_mean = sum / static_cast<double>(m.size());
    s.fraction_mean = fsum / static_cast<double>(m.size());
    double ss = 0;
    for (double v : m) ss += (v - s.median_mean) * (v - s.median_mean);
    s.median_sd = m.size() > 1 ? std::sqrt(ss / static_cast<double>(m.size() - 1)) : 0.0;
  }
  return out;
}

}  // namespace meddiff
