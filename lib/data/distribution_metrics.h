#pragma once
// How two sets of feature vectors compare, with fixed definitions so the same inputs give the same
// numbers (features [n, d], any float dtype; computed in float64 on the CPU):
//   - Fréchet distance |mu_r - mu_s|^2 + tr(S_r + S_s - 2 (S_r S_s)^1/2) of the Gaussians fitted to the
//     two sets (Heusel et al. 2017, eq. 6), with unbiased covariances; tr((S_r S_s)^1/2) as the sum of
//     the square roots of the eigenvalues of S_r^1/2 S_s S_r^1/2 (symmetric, so eigh is exact).
//   - k-NN precision and recall (Kynkäänniemi et al. 2019): a sample lies on a set's manifold when it
//     is within the k-th-neighbour radius of one of its members.
//   - density and coverage (Naeem et al. 2020, eqs. 3-4), from the real set's k-NN radii.
#include <torch/torch.h>

namespace meddiff {

double frechet_distance(const torch::Tensor& real, const torch::Tensor& synthetic);

// Running mean and covariance of feature vectors added in chunks (float64, sums about the first
// vector), for Fréchet distances over more vectors than fit in memory at once (e.g. every slice).
struct FeatureMoments {
  int64_t n = 0;
  torch::Tensor shift, sum, outer;
  void add(const torch::Tensor& rows);  // [k, d] or [d]
  torch::Tensor mean() const;
  torch::Tensor covariance() const;     // unbiased
};
double frechet_distance(const FeatureMoments& real, const FeatureMoments& synthetic);

struct ManifoldMetrics {
  double precision = 0, recall = 0, density = 0, coverage = 0;
  int64_t k = 0;
};
// k is lowered to (set size - 1) when a set is smaller than k + 1.
ManifoldMetrics manifold_metrics(const torch::Tensor& real, const torch::Tensor& synthetic, int64_t k = 5);

}  // namespace meddiff
