#include "data/metrics.h"

#include <cmath>

namespace meddiff {

double psnr(const torch::Tensor& a, const torch::Tensor& b, double data_range) {
  double mse = (a.to(torch::kDouble) - b.to(torch::kDouble)).pow(2).mean().item<double>();
  if (mse <= 0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(data_range * data_range / mse);
}

double ssim3d(const torch::Tensor& a_in, const torch::Tensor& b_in, double data_range) {
  torch::NoGradGuard ng;
  auto as5 = [](const torch::Tensor& t) { return t.dim() == 3 ? t.unsqueeze(0).unsqueeze(0) : t; };
  auto a = as5(a_in).to(torch::kDouble), b = as5(b_in).to(torch::kDouble);
  // Ref: Wang et al., "Image quality assessment: from error visibility to structural similarity", 2004, eq. 13.
  const int64_t size = 7;
  auto g = torch::exp(-(torch::arange(size, torch::kDouble) - (size - 1) / 2.0).pow(2) / (2 * 1.5 * 1.5));
  g = g / g.sum();
  auto w = (g.view({size, 1, 1}) * g.view({1, size, 1}) * g.view({1, 1, size})).view({1, 1, size, size, size});
  auto filt = [&](const torch::Tensor& x) {
    auto y = x.reshape({-1, 1, x.size(2), x.size(3), x.size(4)});
    return torch::conv3d(y, w.to(y.device()));
  };
  double c1 = std::pow(0.01 * data_range, 2), c2 = std::pow(0.03 * data_range, 2);
  auto mu_a = filt(a), mu_b = filt(b);
  auto saa = filt(a * a) - mu_a * mu_a, sbb = filt(b * b) - mu_b * mu_b, sab = filt(a * b) - mu_a * mu_b;
  auto map = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a.pow(2) + mu_b.pow(2) + c1) * (saa + sbb + c2));
  return map.mean().item<double>();
}

}  // namespace meddiff
