#include "data/label_maps.h"

#include "core/error.h"

namespace meddiff {

torch::Tensor label_fractions(const torch::Tensor& label, int64_t num_labels, const std::array<int64_t, 3>& latent_dhw) {
  auto one_hot = torch::one_hot(label.to(torch::kLong), num_labels).permute({3, 0, 1, 2}).to(torch::kFloat);  // [L, D, H, W]
  return torch::adaptive_avg_pool3d(one_hot.unsqueeze(0), {latent_dhw[0], latent_dhw[1], latent_dhw[2]})[0].contiguous();
}

LabelCondition::LabelCondition(const std::string& m, int64_t n, const std::array<int64_t, 3>& image_dhw,
                               const std::array<int64_t, 3>& lat)
    : mode(m), num_labels(n) {
  if (mode != "fractions" && mode != "subvoxel")
    fail("config: 'ldm.label_condition' must be fractions or subvoxel (got '{}')", mode);
  for (int a = 0; a < 3; ++a) {
    if (lat[a] < 1 || image_dhw[a] % lat[a] != 0)
      fail("config: 'ldm.label_condition' needs a latent grid that divides the image grid ([{}, {}, {}] vs [{}, {}, {}])",
           image_dhw[0], image_dhw[1], image_dhw[2], lat[0], lat[1], lat[2]);
    factor[a] = image_dhw[a] / lat[a];
  }
}

int64_t LabelCondition::channels() const { return mode == "subvoxel" ? num_labels * factor[0] * factor[1] * factor[2] : num_labels; }

torch::Tensor LabelCondition::operator()(const torch::Tensor& label) const {
  if (label.dim() == 4) {
    std::vector<torch::Tensor> each;
    for (int64_t b = 0; b < label.size(0); ++b) each.push_back((*this)(label[b]));
    return torch::stack(each);
  }
  const auto& f = factor;
  if (label.dim() != 3 || label.size(0) % f[0] != 0 || label.size(1) % f[1] != 0 || label.size(2) % f[2] != 0)
    fail("label condition: a label map of {} is not a whole number of [{}, {}, {}] latent voxels", label.sizes(), f[0], f[1], f[2]);
  const std::array<int64_t, 3> d{label.size(0) / f[0], label.size(1) / f[1], label.size(2) / f[2]};
  if (mode != "subvoxel") return label_fractions(label, num_labels, d);
  auto one_hot = torch::one_hot(label.to(torch::kLong), num_labels).permute({3, 0, 1, 2}).to(torch::kFloat);  // [L, D, H, W]
  return one_hot.reshape({num_labels, d[0], f[0], d[1], f[1], d[2], f[2]})
      .permute({0, 2, 4, 6, 1, 3, 5})
      .reshape({channels(), d[0], d[1], d[2]})
      .contiguous();
}

torch::Tensor LabelCondition::fractions(const torch::Tensor& cond) const {
  if (mode != "subvoxel") return cond;
  const int64_t B = cond.size(0);
  return cond.reshape({B, num_labels, factor[0] * factor[1] * factor[2], cond.size(2), cond.size(3), cond.size(4)}).mean(2);
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
