#include "data/metrics.h"

#include <cmath>

namespace meddiff {

double psnr(const torch::Tensor& a, const torch::Tensor& b, double data_range) {
  double mse = (a - b).to(torch::kDouble).pow(2).mean().item<double>();
  if (mse <= 0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(data_range * data_range / mse);
}

namespace {

struct SsimMeans {
  double ssim = 0, cs = 0;  // mean SSIM and mean contrast-structure term
};

SsimMeans ssim_means(const torch::Tensor& a_in, const torch::Tensor& b_in, double data_range) {
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
  double sum = 0, sum_cs = 0;
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
    auto cs = (2 * sab + c2) / (saa + sbb + c2);
    auto map = ((2 * mu_a * mu_b + c1) / (mu_a.pow(2) + mu_b.pow(2) + c1)) * cs;
    sum += map.sum().item<double>();
    sum_cs += cs.sum().item<double>();
    count += map.numel();
  }
  if (count == 0) return {std::nan(""), std::nan("")};
  return {sum / static_cast<double>(count), sum_cs / static_cast<double>(count)};
}

}  // namespace

double ssim3d(const torch::Tensor& a, const torch::Tensor& b, double data_range) { return ssim_means(a, b, data_range).ssim; }

double ms_ssim3d(const torch::Tensor& a_in, const torch::Tensor& b_in, double data_range) {
  torch::NoGradGuard ng;
  // Ref: Wang, Simoncelli & Bovik, "Multi-scale structural similarity", 2003, eq. 7, with the weights
  // of their table; scales while every axis keeps >= 7 voxels (the window), weights renormalised.
  static const double w[5] = {0.0448, 0.2856, 0.3001, 0.2363, 0.1333};
  auto a = (a_in.dim() == 3 ? a_in.unsqueeze(0).unsqueeze(0) : a_in).to(torch::kDouble);
  auto b = (b_in.dim() == 3 ? b_in.unsqueeze(0).unsqueeze(0) : b_in).to(torch::kDouble);
  int scales = 0;
  for (int64_t m = std::min({a.size(2), a.size(3), a.size(4)}); m >= 7 && scales < 5; m /= 2) ++scales;
  if (scales == 0) return std::nan("");
  double wsum = 0;
  for (int i = 0; i < scales; ++i) wsum += w[i];
  double out = 1;
  for (int i = 0; i < scales; ++i) {
    SsimMeans m = ssim_means(a, b, data_range);
    // Negative mean terms (anti-correlated structure) count as 0, as common implementations do.
    double v = i + 1 < scales ? m.cs : m.ssim;
    out *= std::pow(std::max(v, 0.0), w[i] / wsum);
    if (i + 1 < scales) {
      a = torch::avg_pool3d(a, 2);
      b = torch::avg_pool3d(b, 2);
    }
  }
  return out;
}

}  // namespace meddiff
