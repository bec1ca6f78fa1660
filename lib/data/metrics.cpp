#include "data/metrics.h"

#include <cmath>

namespace meddiff {

double psnr(const torch::Tensor& a, const torch::Tensor& b, double data_range) {
  double mse = (a - b).to(torch::kDouble).pow(2).mean().item<double>();
  if (mse <= 0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(data_range * data_range / mse);
}

double ssim3d(const torch::Tensor& a_in, const torch::Tensor& b_in, double data_range) {
  torch::NoGradGuard ng;
  auto as5 = [](const torch::Tensor& t) { return t.dim() == 3 ? t.unsqueeze(0).unsqueeze(0) : t; };
  auto a5 = as5(a_in), b5 = as5(b_in);
  // Ref: Wang et al., "Image quality assessment: from error visibility to structural similarity", 2004, eq. 13.
  const int64_t size = 7;
  auto g = torch::exp(-(torch::arange(size, torch::kDouble) - (size - 1) / 2.0).pow(2) / (2 * 1.5 * 1.5));
  g = g / g.sum();
  // The 3-D Gaussian is separable: three 1-D passes (7 taps each) instead of one 7^3 kernel, whose
  // float64 convolution LibTorch runs by unfolding 343 values per voxel.
  auto wd = g.view({1, 1, size, 1, 1}), wh = g.view({1, 1, 1, size, 1}), ww = g.view({1, 1, 1, 1, size});
  double c1 = std::pow(0.01 * data_range, 2), c2 = std::pow(0.03 * data_range, 2);
  // The SSIM map (valid filtering) in slabs of output slices along D, each with the filter's reach, in
  // float64: a large volume never needs more than one slab's temporaries.
  const int64_t D = a5.size(2), out_d = D - size + 1;
  const int64_t slab = std::max<int64_t>(1, (int64_t{4} << 20) / std::max<int64_t>(1, a5.size(0) * a5.size(1) * a5.size(3) * a5.size(4)));
  double sum = 0;
  int64_t count = 0;
  for (int64_t o0 = 0; o0 < out_d; o0 += slab) {
    int64_t n = std::min(slab, out_d - o0);
    auto a = a5.narrow(2, o0, n + size - 1).to(torch::kDouble), b = b5.narrow(2, o0, n + size - 1).to(torch::kDouble);
    auto filt = [&](const torch::Tensor& x) {
      auto y = x.reshape({-1, 1, x.size(2), x.size(3), x.size(4)});
      y = torch::conv3d(y, wd.to(y.device()));
      y = torch::conv3d(y, wh.to(y.device()));
      return torch::conv3d(y, ww.to(y.device()));
    };
    auto mu_a = filt(a), mu_b = filt(b);
    auto saa = filt(a * a) - mu_a * mu_a, sbb = filt(b * b) - mu_b * mu_b, sab = filt(a * b) - mu_a * mu_b;
    auto map = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a.pow(2) + mu_b.pow(2) + c1) * (saa + sbb + c2));
    sum += map.sum().item<double>();
    count += map.numel();
  }
  return count > 0 ? sum / static_cast<double>(count) : std::nan("");
}

}  // namespace meddiff
