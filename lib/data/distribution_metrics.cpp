#include "data/distribution_metrics.h"

#include "core/error.h"

namespace meddiff {
namespace {

torch::Tensor as_features(const torch::Tensor& x, const char* what) {
  if (x.dim() != 2 || x.size(0) < 2) fail("{} features must be [n >= 2, d] (got {})", what, fmt::format("{}", fmt::join(x.sizes(), "x")));
  auto d = x.to(torch::kCPU, torch::kDouble);
  if (!torch::isfinite(d).all().item<bool>()) fail("{} features hold NaN or infinite values", what);
  return d;
}

// Distance of every row of x to its k-th nearest other row.
torch::Tensor kth_radius(const torch::Tensor& x, int64_t k) {
  auto d = torch::cdist(x, x);  // [n, n], 0 on the diagonal
  return std::get<0>(d.topk(k + 1, 1, /*largest=*/false)).select(1, k);
}

}  // namespace

void FeatureMoments::add(const torch::Tensor& rows_in) {
  auto rows = rows_in.to(torch::kCPU, torch::kDouble);
  if (rows.dim() == 1) rows = rows.unsqueeze(0);
  if (!torch::isfinite(rows).all().item<bool>()) fail("features hold NaN or infinite values");
  if (n == 0) {
    shift = rows[0].clone();  // sums about the first row: no cancellation for features far from 0
    sum = torch::zeros_like(shift);
    outer = torch::zeros({shift.size(0), shift.size(0)}, torch::kDouble);
  } else if (rows.size(1) != shift.size(0)) {
    fail("feature sizes differ: {} and {}", rows.size(1), shift.size(0));
  }
  auto c = rows - shift;
  sum += c.sum(0);
  outer += c.t().mm(c);
  n += rows.size(0);
}

torch::Tensor FeatureMoments::mean() const { return shift + sum / static_cast<double>(n); }

torch::Tensor FeatureMoments::covariance() const {
  auto m = sum / static_cast<double>(n);
  return (outer - static_cast<double>(n) * m.outer(m)) / static_cast<double>(n - 1);
}

double frechet_distance(const FeatureMoments& r, const FeatureMoments& s) {
  if (r.n < 2 || s.n < 2) fail("the Fréchet distance needs at least 2 feature vectors per set (got {} and {})", r.n, s.n);
  if (r.sum.size(0) != s.sum.size(0)) fail("feature sizes differ: {} (real) and {} (synthetic)", r.sum.size(0), s.sum.size(0));
  auto mr = r.mean(), ms = s.mean();
  auto cr = r.covariance(), cs = s.covariance();
  auto [lr, vr] = torch::linalg_eigh(cr);
  auto sqrt_r = vr.mm(torch::diag(lr.clamp_min(0).sqrt())).mm(vr.t());
  auto m = sqrt_r.mm(cs).mm(sqrt_r);
  m = 0.5 * (m + m.t());
  auto tr_sqrt = torch::linalg_eigvalsh(m).clamp_min(0).sqrt().sum();
  return ((mr - ms).pow(2).sum() + cr.trace() + cs.trace() - 2 * tr_sqrt).item<double>();
}

double frechet_distance(const torch::Tensor& real_in, const torch::Tensor& synth_in) {
  auto r = as_features(real_in, "real"), s = as_features(synth_in, "synthetic");
  if (r.size(1) != s.size(1)) fail("feature sizes differ: {} (real) and {} (synthetic)", r.size(1), s.size(1));
  FeatureMoments mr, ms;
  mr.add(r);
  ms.add(s);
  return frechet_distance(mr, ms);
}

ManifoldMetrics manifold_metrics(const torch::Tensor& real_in, const torch::Tensor& synth_in, int64_t k) {
  auto r = as_features(real_in, "real"), s = as_features(synth_in, "synthetic");
  if (r.size(1) != s.size(1)) fail("feature sizes differ: {} (real) and {} (synthetic)", r.size(1), s.size(1));
  ManifoldMetrics out;
  out.k = std::max<int64_t>(1, std::min({k, r.size(0) - 1, s.size(0) - 1}));
  auto rr = kth_radius(r, out.k), rs = kth_radius(s, out.k);
  auto d = torch::cdist(s, r);  // [m, n]
  auto in_real = d <= rr.unsqueeze(0);           // synthetic j inside real i's ball
  auto in_synth = d.t() <= rs.unsqueeze(0);      // real i inside synthetic j's ball
  out.precision = in_real.any(1).to(torch::kDouble).mean().item<double>();
  out.recall = in_synth.any(1).to(torch::kDouble).mean().item<double>();
  out.density = in_real.to(torch::kDouble).sum().item<double>() / static_cast<double>(out.k * s.size(0));
  out.coverage = (std::get<0>(d.min(0)) <= rr).to(torch::kDouble).mean().item<double>();
  return out;
}

}  // namespace meddiff
