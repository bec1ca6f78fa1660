#include "data/label_statistics.h"

#include <cmath>

namespace meddiff {

namespace {
torch::Tensor touches(const torch::Tensor& mask) {  // voxels with a 3x3x3 neighbour (or themselves) in `mask`
  auto m = mask.to(torch::kFloat).unsqueeze(0).unsqueeze(0);
  return torch::max_pool3d(m, 3, 1, 1)[0][0] > 0.5;
}
}  // namespace

std::optional<double> edge_step(const torch::Tensor& intensities, const torch::Tensor& label, int64_t k, int64_t min_voxels) {
  auto in = label == k;
  // within the label's bounding box grown by one voxel: a small structure of a large volume (or one of the hundred
  // labels of a whole-body map) costs its own size, not the volume's
  std::vector<at::indexing::TensorIndex> box;
  for (int64_t a = 0; a < 3; ++a) {
    std::vector<int64_t> others;
    for (int64_t b = 0; b < 3; ++b)
      if (b != a) others.push_back(b);
    auto hit = torch::nonzero(in.any(others[1]).any(others[0])).flatten();
    if (hit.numel() == 0) return std::nullopt;
    const int64_t lo = std::max<int64_t>(0, hit.min().item<int64_t>() - 1), hi = std::min(in.size(a), hit.max().item<int64_t>() + 2);
    box.emplace_back(at::indexing::Slice(lo, hi));
  }
  in = in.index(box);
  auto inner = in & touches(in.logical_not()), outer = in.logical_not() & touches(in);
  auto x = intensities.index(box).to(torch::kDouble);
  auto a = x.masked_select(inner), b = x.masked_select(outer);
  if (a.numel() < min_voxels || b.numel() < min_voxels) return std::nullopt;
  return a.median().item<double>() - b.median().item<double>();
}

void LabelSamples::add(const torch::Tensor& intensities, const torch::Tensor& label, int64_t min_voxels) {
  auto x = intensities.to(torch::kDouble).flatten();
  auto l = label.to(torch::kLong).flatten();
  const int64_t top = l.numel() ? l.max().item<int64_t>() : -1;
  if (top + 1 > labels_seen()) {
    medians_.resize(static_cast<size_t>(top + 1));
    fractions_.resize(static_cast<size_t>(top + 1));
    edges_.resize(static_cast<size_t>(top + 1));
  }
  ++volumes_;
  for (int64_t k = 0; k <= top; ++k) {
    auto inside = x.masked_select(l == k);
    if (inside.numel() < min_voxels) continue;
    // the lower median (torch's definition), so it is a value of the volume
    medians_[static_cast<size_t>(k)].push_back(inside.median().item<double>());
    fractions_[static_cast<size_t>(k)].push_back(static_cast<double>(inside.numel()) / static_cast<double>(l.numel()));
    if (k > 0 && label.dim() == 3)
      if (auto e = edge_step(intensities, label.to(torch::kLong), k, min_voxels)) edges_[static_cast<size_t>(k)].push_back(*e);
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
    const auto& e = edges_[k];
    s.edge_volumes = static_cast<int64_t>(e.size());
    if (e.empty()) continue;
    double esum = 0, ess = 0;
    for (double v : e) esum += v;
    s.edge_step_mean = esum / static_cast<double>(e.size());
    for (double v : e) ess += (v - s.edge_step_mean) * (v - s.edge_step_mean);
    s.edge_step_sd = e.size() > 1 ? std::sqrt(ess / static_cast<double>(e.size() - 1)) : 0.0;
  }
  return out;
}

}  // namespace meddiff
