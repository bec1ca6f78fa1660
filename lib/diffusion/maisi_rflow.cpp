#include "diffusion/maisi_rflow.h"
#include "core/error.h"

#include <c10/util/Half.h>

#include <cmath>

namespace meddiff {
namespace {
// MONAI: (numel tensor / base) ** (1/3) * scale, all float32.
float transform_ratio(const MaisiRFlowParams& p, int64_t latent_voxels) {
  return std::pow(static_cast<float>(latent_voxels) / static_cast<float>(p.base_voxels), static_cast<float>(1.0 / 3.0)) *
         static_cast<float>(p.transform_scale);
}
}  // namespace

std::vector<float> maisi_rflow_timesteps(const MaisiRFlowParams& p, int64_t steps, int64_t latent_voxels) {
  if (steps < 1 || steps > p.train_steps) fail("rectified flow: {} steps; it takes 1 to {}", steps, p.train_steps);
  if (latent_voxels < 1) fail("rectified flow: latent of {} voxels", latent_voxels);
  const float T = static_cast<float>(p.train_steps);
  const float ratio = transform_ratio(p, latent_voxels);
  std::vector<float> out;
  for (int64_t i = 0; i < steps; ++i) {
    double t = (1.0 - static_cast<double>(i) / static_cast<double>(steps)) * static_cast<double>(p.train_steps);
    if (p.discrete) t = std::nearbyint(t);  // Python's round: half to even, as nearbyint in the default mode
    float v = static_cast<float>(t);
    if (p.timestep_transform) {
      const float s = static_cast<float>(t / static_cast<double>(p.train_steps));
      v = ratio * s / (1.0f + (ratio - 1.0f) * s) * T;
    }
    float h = static_cast<float>(c10::Half(v));  // astype(float16): round to nearest even
    if (p.discrete) h = std::trunc(h);           // astype(int64)
    out.push_back(h + static_cast<float>(p.steps_offset));
  }
  return out;
}

torch::Tensor maisi_rflow_step(const MaisiRFlowParams& p, const torch::Tensor& x, const torch::Tensor& v, float t, float next_t) {
  // float(timestep - int(next_timestep)): the difference of a fp16 tensor and an integer, in fp16.
  const float diff = static_cast<float>(c10::Half(t - std::trunc(next_t)));
  const double dt = static_cast<double>(diff) / static_cast<double>(p.train_steps);
  return x + v * static_cast<float>(dt);
}

torch::Tensor maisi_rflow_sample(const MaisiRFlowParams& p, torch::Tensor x, const std::vector<float>& timesteps,
                                 const std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)>& velocity,
                                 const std::function<void(int64_t, int64_t)>& on_step) {
  const auto n = static_cast<int64_t>(timesteps.size());
  for (int64_t i = 0; i < n; ++i) {
    const float t = timesteps[static_cast<size_t>(i)], next = i + 1 < n ? timesteps[static_cast<size_t>(i) + 1] : 0.0f;
    auto tt = torch::full({x.size(0)}, t, torch::TensorOptions().dtype(torch::kFloat).device(x.device()));
    x = maisi_rflow_step(p, x, velocity(x, tt), t, next);
    if (on_step) on_step(i + 1, n);
  }
  return x;
}

torch::Tensor maisi_rflow_train_timesteps(const MaisiRFlowParams& p, const torch::Tensor& u, int64_t latent_voxels) {
  if (latent_voxels < 1) fail("rectified flow: latent of {} voxels", latent_voxels);
  const float T = static_cast<float>(p.train_steps);
  auto t = u.to(torch::kFloat) * T;
  if (p.discrete) t = t.trunc();  // .long(), before the transform
  if (p.timestep_transform) {
    MaisiRFlowParams unscaled = p;
    unscaled.transform_scale = 1.0;
    const float ratio = transform_ratio(unscaled, latent_voxels);
    auto s = t / T;
    t = ratio * s / (1.0f + (ratio - 1.0f) * s) * T;
  }
  return t;
}

torch::Tensor maisi_rflow_add_noise(const MaisiRFlowParams& p, const torch::Tensor& x0, const torch::Tensor& noise, const torch::Tensor& t) {
  auto keep = (1.0f - t.to(x0.device(), torch::kFloat) / static_cast<float>(p.train_steps)).view({-1, 1, 1, 1, 1});
  return keep * x0 + (1.0f - keep) * noise;
}

}  // namespace meddiff
