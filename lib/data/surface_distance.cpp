#include "data/surface_distance.h"

#include "core/error.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace meddiff {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// In place along one line of n values f[0], f[stride], ... (squared distances so far): the squared
// distance transform along this axis with voxel size h. Ref: Felzenszwalb & Huttenlocher 2012, alg. 1.
void transform_line(double* f, int64_t n, int64_t stride, double h, std::vector<double>& d, std::vector<int64_t>& v,
                    std::vector<double>& z) {
  int64_t k = 0;
  int64_t first = -1;
  for (int64_t q = 0; q < n; ++q)
    if (f[q * stride] < kInf) {
      first = q;
      break;
    }
  if (first < 0) return;  // no finite value on this line: it stays infinite
  const double h2 = h * h;
  v[0] = first;
  z[0] = -kInf;
  z[1] = kInf;
  for (int64_t q = first + 1; q < n; ++q) {
    const double fq = f[q * stride];
    if (fq == kInf) continue;
    while (true) {
      const int64_t p = v[static_cast<size_t>(k)];
      // intersection of the parabolas of q and p, in units of voxels
      const double s = ((fq + h2 * static_cast<double>(q * q)) - (f[p * stride] + h2 * static_cast<double>(p * p))) /
                       (2 * h2 * static_cast<double>(q - p));
      if (s <= z[static_cast<size_t>(k)]) {
        --k;
        if (k < 0) {
          k = 0;
          v[0] = q;
          z[0] = -kInf;
          z[1] = kInf;
          break;
        }
        continue;
      }
      ++k;
      v[static_cast<size_t>(k)] = q;
      z[static_cast<size_t>(k)] = s;
      z[static_cast<size_t>(k + 1)] = kInf;
      break;
    }
  }
  k = 0;
  for (int64_t q = 0; q < n; ++q) {
    while (z[static_cast<size_t>(k + 1)] < static_cast<double>(q)) ++k;
    const int64_t p = v[static_cast<size_t>(k)];
    const double dq = static_cast<double>(q - p);
    d[static_cast<size_t>(q)] = h2 * dq * dq + f[p * stride];
  }
  for (int64_t q = 0; q < n; ++q) f[q * stride] = d[static_cast<size_t>(q)];
}

}  // namespace

torch::Tensor distance_transform(const torch::Tensor& seeds, const std::array<double, 3>& spacing) {
  if (seeds.dim() != 3) fail("distance_transform: a [D, H, W] mask is needed");
  auto f = torch::where(seeds.to(torch::kBool), torch::zeros(seeds.sizes(), torch::kDouble), torch::full(seeds.sizes(), kInf, torch::kDouble))
               .contiguous();
  const int64_t D = f.size(0), H = f.size(1), W = f.size(2);
  double* p = f.data_ptr<double>();
  const int64_t n = std::max({D, H, W});
  std::vector<double> d(static_cast<size_t>(n)), z(static_cast<size_t>(n + 1));
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t a = 0; a < D; ++a)  // along W (x)
    for (int64_t b = 0; b < H; ++b) transform_line(p + (a * H + b) * W, W, 1, spacing[0], d, v, z);
  for (int64_t a = 0; a < D; ++a)  // along H (y)
    for (int64_t c = 0; c < W; ++c) transform_line(p + a * H * W + c, H, W, spacing[1], d, v, z);
  for (int64_t b = 0; b < H; ++b)  // along D (z)
    for (int64_t c = 0; c < W; ++c) transform_line(p + b * W + c, D, H * W, spacing[2], d, v, z);
  return f.sqrt();
}

torch::Tensor mask_surface(const torch::Tensor& mask) {
  auto m = mask.to(torch::kBool);
  // a voxel is inside when all six neighbours are in the mask (outside the grid counts as outside)
  auto padded = torch::constant_pad_nd(m.to(torch::kUInt8), {1, 1, 1, 1, 1, 1}, 0).to(torch::kBool);
  const int64_t D = m.size(0), H = m.size(1), W = m.size(2);
  auto inner = m.clone();
  for (int64_t a = 0; a < 3; ++a)
    for (int64_t s : {0, 2}) {
      auto nb = padded.slice(0, a == 0 ? s : 1, (a == 0 ? s : 1) + D)
                    .slice(1, a == 1 ? s : 1, (a == 1 ? s : 1) + H)
                    .slice(2, a == 2 ? s : 1, (a == 2 ? s : 1) + W);
      inner = inner & nb;
    }
  return m & ~inner;
}

SegmentationScore score_label(const torch::Tensor& prediction, const torch::Tensor& truth, int64_t label,
                              const std::array<double, 3>& spacing) {
  if (prediction.sizes() != truth.sizes()) fail("score_label: prediction and truth differ in size");
  auto p = prediction == label, t = truth == label;
  const double np = p.sum().item<double>(), nt = t.sum().item<double>(), both = (p & t).sum().item<double>();
  SegmentationScore s;
  s.dice = np + nt > 0 ? 2 * both / (np + nt) : 1.0;
  if (np == 0 || nt == 0) return s;
  auto sp = mask_surface(p), st = mask_surface(t);
  auto to_t = distance_transform(st, spacing).masked_select(sp);  // from the predicted surface to the true one
  auto to_p = distance_transform(sp, spacing).masked_select(st);
  s.assd = (to_t.sum().item<double>() + to_p.sum().item<double>()) / static_cast<double>(to_t.numel() + to_p.numel());
  auto q95 = [](const torch::Tensor& d) { return torch::quantile(d, 0.95).item<double>(); };
  s.hd95 = std::max(q95(to_t), q95(to_p));
  return s;
}

}  // namespace meddiff
