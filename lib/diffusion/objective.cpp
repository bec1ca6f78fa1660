#include "diffusion/objective.h"

#include "core/error.h"

#include <cmath>

namespace meddiff {

Prediction parse_prediction(const std::string& s) {
  if (s == "eps") return Prediction::Eps;
  if (s == "x0") return Prediction::X0;
  if (s == "v") return Prediction::V;
  fail("config: 'ldm.prediction' must be eps, x0 or v (got '{}')", s);
}

namespace {
torch::Tensor per_sample(const torch::Tensor& v, const torch::Tensor& like) {
  std::vector<int64_t> shape(static_cast<size_t>(like.dim()), 1);
  shape[0] = v.size(0);
  return v.to(like.dtype()).view(shape);
}
}  // namespace

torch::Tensor q_sample(const torch::Tensor& x0, const torch::Tensor& eps, const torch::Tensor& ab) {
  return per_sample(ab.sqrt(), x0) * x0 + per_sample((1 - ab).sqrt(), x0) * eps;
}

torch::Tensor prediction_target(Prediction p, const torch::Tensor& x0, const torch::Tensor& eps, const torch::Tensor& ab) {
  switch (p) {
    case Prediction::Eps: return eps;
    case Prediction::X0: return x0;
    default: return per_sample(ab.sqrt(), x0) * eps - per_sample((1 - ab).sqrt(), x0) * x0;  // v
  }
}

X0Eps split_prediction(Prediction p, const torch::Tensor& out, const torch::Tensor& x_t, double ab) {
  double a = std::sqrt(ab), s = std::sqrt(1 - ab);
  switch (p) {
    case Prediction::Eps: return {(x_t - s * out) / a, out};
    case Prediction::X0: return {out, (x_t - a * out) / s};
    default:  // v: x0 = a x_t - s v, eps = s x_t + a v
      return {a * x_t - s * out, s * x_t + a * out};
  }
}

torch::Tensor eps_from_x0(const torch::Tensor& x0, const torch::Tensor& x_t, double ab) {
  return (x_t - std::sqrt(ab) * x0) / std::sqrt(1 - ab);
}

}  // namespace meddiff
