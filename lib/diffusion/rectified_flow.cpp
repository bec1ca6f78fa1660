#include "diffusion/rectified_flow.h"

#include "core/error.h"

#include <cmath>

namespace meddiff {

double rflow_resolution_shift(int64_t voxels) { return std::cbrt(static_cast<double>(voxels) / 32768.0); }

double rflow_shift_time(double t, double shift) { return shift * t / (1 + (shift - 1) * t); }

torch::Tensor rflow_shift_time(const torch::Tensor& t, double shift) { return t * shift / (1 + (shift - 1) * t); }

torch::Tensor rflow_interpolate(const torch::Tensor& x0, const torch::Tensor& eps, const torch::Tensor& t) {
  std::vector<int64_t> shape(static_cast<size_t>(x0.dim()), 1);
  shape[0] = x0.size(0);
  auto tt = t.to(x0.dtype()).view(shape);
  return (1 - tt) * x0 + tt * eps;
}

torch::Tensor rflow_velocity_target(const torch::Tensor& x0, const torch::Tensor& eps) { return eps - x0; }

std::vector<double> rflow_time_grid(int64_t steps, double shift) {
  if (steps < 1) fail("rectified flow: steps must be at least 1 (got {})", steps);
  if (!(shift > 0)) fail("rectified flow: the timestep shift must be positive (got {})", shift);
  std::vector<double> g;
  for (int64_t i = 0; i <= steps; ++i) g.push_back(rflow_shift_time(1.0 - static_cast<double>(i) / static_cast<double>(steps), shift));
  return g;
}

}  // namespace meddiff
