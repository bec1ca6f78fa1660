#include "data/label_maps.h"

#include "core/error.h"

namespace meddiff {

torch::Tensor label_fractions(const torch::Tensor& label, int64_t num_labels, const std::array<int64_t, 3>& latent_dhw) {
  auto one_hot = torch::one_hot(label.to(torch::kLong), num_labels).permute({3, 0, 1, 2}).to(torch::kFloat);  // [L, D, H, W]
  return torch::adaptive_avg_pool3d(one_hot.unsqueeze(0), {latent_dhw[0], latent_dhw[1], latent_dhw[2]})[0].contiguous();
}

std::vector<std::string> label_names_or_default(const std::vector<std::string>& names, int64_t num_labels) {
  if (!names.empty()) return names;
  std::vector<std::string> out{"background"};
  for (int64_t i = 1; i < num_labels; ++i) out.push_back("label_" + std::to_string(i));
  return out;
}

void check_label_map(const torch::Tensor& label, const std::array<int64_t, 3>& shape, int64_t num_labels, const std::string& what) {
  if (!label.defined()) fail("{}: has no label map (data.labels = condition needs one for every case)", what);
  if (label.dim() != 3 || label.size(0) != shape[0] || label.size(1) != shape[1] || label.size(2) != shape[2])
    fail("{}: the label map is {} but the grid is [{}, {}, {}]", what, label.sizes(), shape[0], shape[1], shape[2]);
  if (label.is_floating_point() && !torch::equal(label, label.round()))
    fail("{}: the label map has non-integer values", what);
  auto lo = label.min().item<double>(), hi = label.max().item<double>();
  if (lo < 0 || hi >= static_cast<double>(num_labels))
    fail("{}: label values span {}..{}, expected 0..{} ({} labels; set data.label_names)", what, lo, hi, num_labels - 1, num_labels);
}

}  // namespace meddiff
