#pragma once
// Rectified flow (Liu et al. 2022, "Flow straight and fast"; as MAISI trains its 3-D latent models):
// x_t = (1 - t) x0 + t eps for t in [0, 1] (t = 1: pure noise), and the network predicts the velocity
// v = eps - x0 from (x_t, 1000 t). Sampling integrates dx/dt = v from t = 1 down to 0.
//   - Timestep shift (Esser et al. 2024, eq. 23; MAISI's resolution-dependent transform): a uniform
//     t becomes s t / (1 + (s - 1) t); s = (latent voxels / 32^3)^(1/3) by default, so a larger latent
//     spends more of training and sampling at high noise.
//   - Euler: x_s = x_t + (s - t) v(x_t, t): one network evaluation per step, first order.
//   - Heun: Euler's prediction, then the mean of the velocities at both ends (two evaluations per step,
//     second order; Karras et al. 2022, algorithm 1).
#include <torch/torch.h>

#include <vector>

namespace meddiff {

// The resolution-dependent shift of a latent of `voxels` spatial voxels: (voxels / 32768)^(1/3).
double rflow_resolution_shift(int64_t voxels);
// s t / (1 + (s - 1) t).
double rflow_shift_time(double t, double shift);
torch::Tensor rflow_shift_time(const torch::Tensor& t, double shift);

// x_t for per-sample times t [B].
torch::Tensor rflow_interpolate(const torch::Tensor& x0, const torch::Tensor& eps, const torch::Tensor& t);
// The training target eps - x0.
torch::Tensor rflow_velocity_target(const torch::Tensor& x0, const torch::Tensor& eps);

// Times visited with `steps` steps: uniform in [0, 1] from 1 to 0, then shifted (steps + 1 values).
std::vector<double> rflow_time_grid(int64_t steps, double shift);

}  // namespace meddiff
