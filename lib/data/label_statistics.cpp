#include "data/label_statistics.h"

#include <cmath>
#include <tuple>
#include <utility>

namespace meddiff {

namespace {
torch::Tensor touches(const torch::Tensor& mask) {  // voxels with a 3x3x3 neighbour (or themselves) in `mask`
  auto m = mask.to(torch::kFloat).unsqueeze(0).unsqueeze(0);
  return torch::max_pool3d(m, 3, 1, 1)[0][0] > 0.5;
}

// Mean and sample standard deviation (0 for fewer than two values) of a non-empty list.
std::pair<double, double> mean_sd(const std::vector<double>& v) {
  double sum = 0, ss = 0;
  for (double x : v) sum += x;
  const double mean = sum / static_cast<double>(v.size());
  for (double x : v) ss += (x - mean) * (x - mean);
  return {mean, v.size() > 1 ? std::sqrt(ss / static_cast<double>(v.size() - 1)) : 0.0};
}
}  // namespace

std::optional<EdgeMeasures> edge_measures(const torch::Tensor& intensities, const torch::Tensor& mask, int64_t min_voxels) {
  auto in = mask.to(torch::kBool);
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
  EdgeMeasures e;
  const double lo = b.median().item<double>();
  e.step = a.median().item<double>() - lo;
  const double mid = lo + e.step / 2;
  auto side = (e.step >= 0 ? x > mid : x < mid) & (in | outer);  // on the label's side, within a voxel of it
  const double both = (side & in).sum().item<double>();
  e.agreement = 2 * both / (side.sum().item<double>() + in.sum().item<double>());
  return e;
}

void LabelSamples::add(const torch::Tensor& intensities, const torch::Tensor& label, int64_t min_voxels) {
  auto x = intensities.to(torch::kDouble).flatten();
  const auto lab = label.to(torch::kLong);
  auto l = lab.flatten();
  const int64_t top = l.numel() ? l.max().item<int64_t>() : -1;
  if (top + 1 > labels_seen()) {
    medians_.resize(static_cast<size_t>(top + 1));
    fractions_.resize(static_cast<size_t>(top + 1));
    edges_.resize(static_cast<size_t>(top + 1));
    agreements_.resize(static_cast<size_t>(top + 1));
  }
  ++volumes_;
  for (int64_t k = 0; k <= top; ++k) {
    const auto mask = lab == k;
    auto inside = x.masked_select(mask.flatten());
    if (inside.numel() < min_voxels) continue;
    // the lower median (torch's definition), so it is a value of the volume
    medians_[static_cast<size_t>(k)].push_back(inside.median().item<double>());
    fractions_[static_cast<size_t>(k)].push_back(static_cast<double>(inside.numel()) / static_cast<double>(l.numel()));
    if (k > 0 && label.dim() == 3)
      if (auto e = edge_measures(intensities, mask, min_voxels)) {
        edges_[static_cast<size_t>(k)].push_back(e->step);
        agreements_[static_cast<size_t>(k)].push_back(e->agreement);
      }
  }
}

std::vector<LabelStatistics> LabelSamples::summary(int64_t num_labels) const {
  std::vector<LabelStatistics> out(static_cast<size_t>(std::max<int64_t>(0, num_labels)));
  for (size_t k = 0; k < out.size(); ++k) {
    auto& s = out[k];
    s.label = static_cast<int64_t>(k);
    if (k >= medians_.size() || medians_[k].empty()) continue;
    s.volumes = static_cast<int64_t>(medians_[k].size());
    std::tie(s.median_mean, s.median_sd) = mean_sd(medians_[k]);
    s.fraction_mean = mean_sd(fractions_[k]).first;
    s.edge_volumes = static_cast<int64_t>(edges_[k].size());
    if (!edges_[k].empty()) {
      std::tie(s.edge_step_mean, s.edge_step_sd) = mean_sd(edges_[k]);
      std::tie(s.edge_agreement_mean, s.edge_agreement_sd) = mean_sd(agreements_[k]);
    }
  }
  return out;
}

}  // namespace meddiff
