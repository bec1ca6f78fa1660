#pragma once
// MAISI's rectified-flow sampling recipe, exactly as MONAI's RFlowScheduler computes it with the settings of
// NV-Generate-CTMR (scripts/diff_model_infer.py), so that an imported MAISI model reproduces MONAI's run:
//  - timesteps: t_i = (1 - i/N) T for i < N (T = 1000 training steps), rounded to integers when discrete; with
//    the timestep transform, s = t/T and r = (latent voxels / base voxels)^(1/3): t = T r s / (1 + (r - 1) s),
//    computed in float32 as MONAI does with a tensor voxel count; the list is then rounded to fp16 (and to int64
//    when discrete), + steps_offset;
//  - step: x + v dt with dt = fp16(t - int(next t)) / T (the next of the last is 0), v the network's output
//    (MONAI's velocity points from noise to data: x0 - eps);
//  - guidance: v = v(uncond) + g (v(cond) - v(uncond)), the unconditional pass with class 0.
// meddiff's own rectified flow (diffusion/rectified_flow.h) is the same ODE in double precision; this file
// exists to be bit-compatible with MAISI's fp16 timestep rounding.
#include <torch/torch.h>

#include <functional>
#include <vector>

namespace meddiff {

struct MaisiRFlowParams {
  int64_t train_steps = 1000;            // num_train_timesteps
  bool discrete = false;                 // use_discrete_timesteps (MAISI: false)
  bool timestep_transform = true;        // use_timestep_transform (MAISI: true)
  int64_t base_voxels = 32 * 32 * 32;    // base_img_size_numel
  double transform_scale = 1.0;          // transform_scale
  int64_t steps_offset = 0;
};

// The N timesteps of a latent of `latent_voxels` spatial voxels (fp16 values as floats).
std::vector<float> maisi_rflow_timesteps(const MaisiRFlowParams& p, int64_t steps, int64_t latent_voxels);

// One Euler step from timestep t to next_t (0 after the last).
torch::Tensor maisi_rflow_step(const MaisiRFlowParams& p, const torch::Tensor& x, const torch::Tensor& v, float t, float next_t);

// Integrates from x_T over the timesteps; velocity(x, t) gets the timestep as a float32 [B] tensor on x's device.
torch::Tensor maisi_rflow_sample(const MaisiRFlowParams& p, torch::Tensor x, const std::vector<float>& timesteps,
                                 const std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)>& velocity,
                                 const std::function<void(int64_t, int64_t)>& on_step = nullptr);

// Training (MAISI's diff_model_train.py with MONAI's RFlowScheduler.sample_timesteps): a sample's timestep from a
// uniform u in [0, 1): t = u T (truncated to an integer when discrete), then the timestep transform for a latent
// of `latent_voxels` spatial voxels in float32, without transform_scale (sample_timesteps passes none; sampling
// does); u [B] -> t [B] float.
torch::Tensor maisi_rflow_train_timesteps(const MaisiRFlowParams& p, const torch::Tensor& u, int64_t latent_voxels);
// The noisy latent at timesteps t [B]: (1 - t/T) x0 + (t/T) noise (RFlowScheduler.add_noise); the network learns
// the velocity x0 - noise.
torch::Tensor maisi_rflow_add_noise(const MaisiRFlowParams& p, const torch::Tensor& x0, const torch::Tensor& noise, const torch::Tensor& t);

}  // namespace meddiff
