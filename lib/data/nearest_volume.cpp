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
  torch::NoGradGuard ng;
  if (refs.empty()) fail("no reference volumes to compare with");
  if (max_shift < 0) fail("max_shift must be >= 0 (got {})", max_shift);
  const int64_t m = max_shift + 1, S = max_shift, w = 2 * S + 1;
  for (int a = 0; a < 3; ++a) {
    shape_[static_cast<size_t>(a)] = refs.front().size(a);
    if (refs.front().size(a) < 2 * m + 4)
      fail("volumes of shape {} are too small to search shifts of {} voxels", fmt::format("{}", fmt::join(refs.front().sizes(), "x")), S);
  }
  // Start and end of the reference's window for every shift, per axis.
  std::array<torch::Tensor, 3> lo, hi;
  for (size_t a = 0; a < 3; ++a) {
    lo[a] = torch::arange(m - S, m + S + 1, torch::kLong);
    hi[a] = lo[a] + (shape_[a] - 2 * m);
  }
  auto box_sums = [&](const torch::Tensor& v) {  // sum of v over the window at every shift: [w, w, w]
    auto I = torch::nn::functional::pad(v.cumsum(0).cumsum(1).cumsum(2), torch::nn::functional::PadFuncOptions({1, 0, 1, 0, 1, 0}));
    auto at = [&](const torch::Tensor& i, const torch::Tensor& j, const torch::Tensor& k) {
      return I.index({i.view({w, 1, 1}), j.view({1, w, 1}), k.view({1, 1, w})});
    };
    return at(hi[0], hi[1], hi[2]) - at(lo[0], hi[1], hi[2]) - at(hi[0], lo[1], hi[2]) - at(hi[0], hi[1], lo[2]) +
           at(lo[0], lo[1], hi[2]) + at(lo[0], hi[1], lo[2]) + at(hi[0], lo[1], lo[2]) - at(lo[0], lo[1], lo[2]);
  };
  const double count = static_cast<double>((shape_[0] - 2 * m) * (shape_[1] - 2 * m) * (shape_[2] - 2 * m));
  for (const auto& r_in : refs) {
    auto r = checked(r_in);
    spectra_.push_back(torch::fft::rfftn(r));
    auto sum = box_sums(r), sq = box_sums(r * r);
    norms_.push_back((sq - sum * sum / count).clamp_min(0).sqrt());
  }
}

torch::Tensor NccIndex::checked(const torch::Tensor& v) const {
  if (v.dim() != 3 || v.size(0) != shape_[0] || v.size(1) != shape_[1] || v.size(2) != shape_[2])
    fail("volume of shape {} compared with references of shape {}", fmt::format("{}", fmt::join(v.sizes(), "x")),
         fmt::format("{}", fmt::join(shape_, "x")));
  return v.to(torch::kCPU, torch::kDouble);
}

torch::Tensor NccIndex::query_spectrum(const torch::Tensor& query) const {
  const int64_t m = max_shift_ + 1;
  auto q = checked(query);
  auto c = q.slice(0, m, shape_[0] - m).slice(1, m, shape_[1] - m).slice(2, m, shape_[2] - m);
  c = c - c.mean();
  c = c / c.norm().clamp_min(1e-12);
  auto embedded = torch::zeros_like(q);
  embedded.slice(0, m, shape_[0] - m).slice(1, m, shape_[1] - m).slice(2, m, shape_[2] - m).copy_(c);
  return torch::fft::rfftn(embedded).conj();
}

torch::Tensor NccIndex::scores(const torch::Tensor& q, size_t first, size_t count) const {
  const int64_t S = max_shift_;
  std::vector<torch::Tensor> group(spectra_.begin() + static_cast<long>(first), spectra_.begin() + static_cast<long>(first + count));
  auto corr = torch::fft::irfftn(q * torch::stack(group), std::vector<int64_t>{shape_[0], shape_[1], shape_[2]},
                                 std::vector<int64_t>{1, 2, 3});  // [g, D, H, W]: sum_x q(x) r(x + shift)
  // shifts -S..S sit at indices N-S..N-1 and 0..S of each axis (no wrap: the window keeps x + shift inside)
  for (int a = 0; a < 3; ++a) {
    const int64_t N = shape_[static_cast<size_t>(a)];
    corr = torch::cat({corr.narrow(1 + a, N - S, S), corr.narrow(1 + a, 0, S + 1)}, 1 + a);
  }
  std::vector<torch::Tensor> den(norms_.begin() + static_cast<long>(first), norms_.begin() + static_cast<long>(first + count));
  return corr / torch::stack(den).clamp_min(1e-12);  // [g, 2S+1, 2S+1, 2S+1]
}

torch::Tensor NccIndex::all(const torch::Tensor& query) const {
  torch::NoGradGuard ng;
  auto q = query_spectrum(query);
  std::vector<torch::Tensor> out;
  const size_t chunk = 16;
  for (size_t i0 = 0; i0 < spectra_.size(); i0 += chunk) {
    auto s = scores(q, i0, std::min(chunk, spectra_.size() - i0));
    out.push_back(std::get<0>(s.reshape({s.size(0), -1}).max(1)));
  }
  return torch::cat(out);
}

NccIndex::Match NccIndex::nearest(const torch::Tensor& query) const {
  torch::NoGradGuard ng;
  auto a = all(query);
  Match m;
  m.index = a.argmax().item<int64_t>();
  m.ncc = a[m.index].item<double>();
  if (a.numel() > 1) m.second = std::get<0>(a.topk(2))[1].item<double>();
  auto s = scores(query_spectrum(query), static_cast<size_t>(m.index), 1)[0];
  const int64_t w = 2 * max_shift_ + 1, best = s.flatten().argmax().item<int64_t>();
  m.shift = {best / (w * w) - max_shift_, (best / w) % w - max_shift_, best % w - max_shift_};
  return m;
}

}  // namespace meddiff
