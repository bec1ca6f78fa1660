#include "data/nearest_volume.h"

#include "core/error.h"

#include <cmath>

namespace meddiff {

namespace {
torch::Tensor blur(const torch::Tensor& v, double sigma) {
  const int64_t r = static_cast<int64_t>(std::ceil(3 * sigma));
  auto k = torch::exp(-torch::arange(-r, r + 1, torch::kDouble).pow(2) / (2 * sigma * sigma));
  k = k / k.sum();
  auto t = v.to(torch::kDouble).unsqueeze(0).unsqueeze(0);
  for (int a = 0; a < 3; ++a) {
    std::vector<int64_t> shape{1, 1, 1, 1, 1}, pad(6, 0);
    shape[static_cast<size_t>(2 + a)] = 2 * r + 1;
    pad[static_cast<size_t>(2 * (2 - a))] = r;  // F.pad order: last axis first
    pad[static_cast<size_t>(2 * (2 - a) + 1)] = r;
    t = torch::conv3d(torch::nn::functional::pad(t, torch::nn::functional::PadFuncOptions(pad).mode(torch::kReplicate)), k.view(shape));
  }
  return t[0][0];
}
}  // namespace

torch::Tensor band_pass(const torch::Tensor& v, double fine, double coarse) {
  torch::NoGradGuard ng;
  return blur(v, fine) - blur(v, coarse);
}

NccIndex::NccIndex(const std::vector<torch::Tensor>& refs, int64_t max_shift) : max_shift_(max_shift) {
  if (refs.empty()) fail("no reference volumes to compare with");
  if (max_shift < 0) fail("max_shift must be >= 0 (got {})", max_shift);
  for (int a = 0; a < 3; ++a) {
    shape_[static_cast<size_t>(a)] = refs.front().size(a);
    padded_[static_cast<size_t>(a)] = refs.front().size(a) + max_shift;
  }
  for (const auto& r : refs) {
    double n = 0;
    spectra_.push_back(spectrum(r, &n));
    norms_.push_back(n);
  }
}

torch::Tensor NccIndex::spectrum(const torch::Tensor& v_in, double* norm) const {
  if (v_in.dim() != 3 || v_in.size(0) != shape_[0] || v_in.size(1) != shape_[1] || v_in.size(2) != shape_[2])
    fail("volume of shape {} compared with references of shape {}", fmt::format("{}", fmt::join(v_in.sizes(), "x")),
         fmt::format("{}", fmt::join(shape_, "x")));
  auto v = v_in.to(torch::kCPU, torch::kDouble);
  v = v - v.mean();
  *norm = v.norm().item<double>();
  return torch::fft::rfftn(v, std::vector<int64_t>{padded_[0], padded_[1], padded_[2]});
}

torch::Tensor NccIndex::all(const torch::Tensor& query) const {
  torch::NoGradGuard ng;
  double qn = 0;
  auto q = spectrum(query, &qn).conj();
  std::vector<int64_t> idx;
  const int64_t s = max_shift_;
  std::vector<torch::Tensor> out;
  const size_t chunk = 16;
  for (size_t i0 = 0; i0 < spectra_.size(); i0 += chunk) {
    std::vector<torch::Tensor> group(spectra_.begin() + static_cast<long>(i0),
                                     spectra_.begin() + static_cast<long>(std::min(spectra_.size(), i0 + chunk)));
    auto corr = torch::fft::irfftn(q * torch::stack(group), std::vector<int64_t>{padded_[0], padded_[1], padded_[2]},
                                   std::vector<int64_t>{1, 2, 3});  // [g, P0, P1, P2]: sum_x q(x) r(x + shift)
    // shifts -s..s sit at indices P-s..P-1 and 0..s of each axis
    for (int a = 0; a < 3; ++a) {
      const int64_t P = padded_[static_cast<size_t>(a)];
      corr = torch::cat({corr.narrow(1 + a, P - s, s), corr.narrow(1 + a, 0, s + 1)}, 1 + a);
    }
    out.push_back(std::get<0>(corr.reshape({corr.size(0), -1}).max(1)));
  }
  auto best = torch::cat(out);
  auto norms = torch::tensor(norms_, torch::kDouble) * qn;
  return best / norms.clamp_min(1e-12);
}

NccIndex::Match NccIndex::nearest(const torch::Tensor& query) const {
  auto a = all(query);
  Match m;
  m.index = a.argmax().item<int64_t>();
  m.ncc = a[m.index].item<double>();
  // the shift of the best match, for the report
  double qn = 0;
  auto corr = torch::fft::irfftn(spectrum(query, &qn).conj() * spectra_[static_cast<size_t>(m.index)],
                                 std::vector<int64_t>{padded_[0], padded_[1], padded_[2]});
  int64_t best = -1;
  double bv = -1e300;
  const int64_t s = max_shift_;
  for (int64_t i = -s; i <= s; ++i)
    for (int64_t j = -s; j <= s; ++j)
      for (int64_t k = -s; k <= s; ++k) {
        double v = corr[(i + padded_[0]) % padded_[0]][(j + padded_[1]) % padded_[1]][(k + padded_[2]) % padded_[2]].item<double>();
        if (v > bv) {
          bv = v;
          best = ((i + s) * (2 * s + 1) + (j + s)) * (2 * s + 1) + (k + s);
        }
      }
  const int64_t w = 2 * s + 1;
  m.shift = {best / (w * w) - s, (best / w) % w - s, best % w - s};
  return m;
}

}  // namespace meddiff
