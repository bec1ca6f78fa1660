#include "data/label_statistics.h"

#include <cmath>

namespace meddiff {

void LabelSamples::add(const torch::Tensor& intensities, const torch::Tensor& label, int64_t min_voxels) {
  auto x = intensities.to(torch::kDouble).flatten();
  auto l = label.to(torch::kLong).flatten();
  const int64_t top = l.numel() ? l.max().item<int64_t>() : -1;
  if (top + 1 > labels_seen()) {
    medians_.resize(static_cast<size_t>(top + 1));
    fractions_.resize(static_cast<size_t>(top + 1));
  }
  ++volumes_;
  for (int64_t k = 0; k <= top; ++k) {
    auto inside = x.masked_select(l == k);
    if (inside.numel() < min_voxels) continue;
    // the lower median (torch's definition), so it is a value of the volume
    medians_[static_cast<size_t>(k)].push_back(inside.median().item<double>());
    fractions_[static_cast<size_t>(k)].push_back(static_cast<double>(inside.numel()) / static_cast<double>(l.numel()));
  }
}

std::vector<LabelStatistics> LabelSamples::summary(int64_t num_labels) const {
  std::vector<LabelStatistics> out(static_cast<size_t>(std::max<int64_t>(0, num_labels)));
  for (size_t k = 0; k < out.size(); ++k) {
    auto& s = out[k];
    s.label = static_cast<int64_t>(k);
    if (k >= medians_.size() || medians_[k].empty()) continue;
    const auto& m = medians_[k];
    s.volumes = static_cast<int64_t>(m.size());
    double sum = 0, fsum = 0;
    for (size_t i = 0; i < m.size(); ++i) sum += m[i], fsum += fractions_[k][i];
    s.median_mean = sum / static_cast<double>(m.size());
    s.fraction_mean = fsum / static_cast<double>(m.size());
    double ss = 0;
    for (double v : m) ss += (v - s.median_mean) * (v - s.median_mean);
    s.median_sd = m.size() > 1 ? std::sqrt(ss / static_cast<double>(m.size() - 1)) : 0.0;
  }
  return out;
}

}  // namespace meddiff
