#pragma once
// Samplers for the reverse process, each with classifier-free guidance, static x0 clipping and
// optional dynamic thresholding. The step functions are exposed for tests against closed forms.
#include "diffusion/objective.h"
#include "diffusion/rectified_flow.h"
#include "diffusion/schedule.h"
#include "ops/sampler_update.h"

#include <functional>
#include <optional>

namespace meddiff {

struct SamplerParams {
  std::string sampler = "ddim";   // ddpm, ddim, dpmpp2m (diffusion); euler, heun (rectified flow)
  int64_t steps = 50;             // network evaluations (x2 with guidance)
  double eta = 0.0;               // DDIM stochasticity (0 = deterministic, 1 = DDPM-like)
  double guidance = 1.0;          // classifier-free guidance weight w: uncond + w (cond - uncond); 1 = none
  bool clip_x0 = true;            // clamp predicted x0 to [-x0_bound, x0_bound]
  double x0_bound = 1.0;          // the data range (the LDM stores its training latents' range)
  double dynamic_threshold = 0;   // percentile (e.g. 0.995) of |x0| per sample; 0 = off
  std::string grid = "uniform";   // diffusion samplers' timesteps: uniform (in t), logsnr, karras, leading or monai
  bool batch_networks = false;    // generate_volumes: one network forward for the whole batch and guidance pair
  bool bf16 = false;              // generate_volumes: the networks under CUDA bf16 autocast (CUDA only)
  void validate(int64_t T) const;  // T: the diffusion model's timesteps; 0 for rectified flow
};

// The network: output for x_t at integer timestep t (per sample) and class ids (the null class for
// the unconditional branch).
using ModelFn = std::function<torch::Tensor(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& cls)>;

// The step count of a sampler when sample.steps is 0 (the default): measured on the MR demo's models
// (README, "Which sampler"): the smallest count tried whose Fréchet distance is within the spread
// between two seeds (0.07) of the sampler's best and whose recall and histogram intersection are not
// lower by more than 0.01: ddim 10 (of 10/25/50), dpmpp2m 10 (of 5/10/20), euler 5 (of 5/10/20/30), heun 5 (of 5/10;
// 10 evaluations). ddpm (ancestral) was not swept: all T timesteps.
int64_t default_steps(const std::string& sampler, int64_t T);

// Timesteps visited by a sampler with `steps` evaluations: evenly spaced from T-1 down to 0.
std::vector<int64_t> sampling_timesteps(int64_t T, int64_t steps);
// The same on another grid, from T-1 down to 0, each target mapped to the timestep of the nearest
// value and repeats dropped (so a grid may visit fewer than `steps` timesteps):
//   uniform: as above; logsnr: uniform in log-SNR = log(alpha_bar / (1 - alpha_bar)) (Lu et al. 2022,
//   DPM-Solver, sec. 3.3); karras: sigma = sqrt((1 - alpha_bar) / alpha_bar) uniform in sigma^(1/7)
//   (Karras et al. 2022, eq. 5, rho = 7); leading: k x (T / steps) for k = steps-1 .. 0, as the DDIM / DDPM
//   schedulers of MONAI Generative set their timesteps; monai: round(linspace(T - 1, 0, steps)), as
//   MONAI's own DDIM / DDPM schedulers do (for imported MONAI models).
std::vector<int64_t> grid_timesteps(const NoiseSchedule& schedule, int64_t steps, const std::string& grid);
// The timestep each visited timestep ts[i] steps to (-1: the clean end, alpha_bar 1): the next visited one,
// except on the "monai" grid, whose DDIM steps to ts[i] - T / steps (MONAI's rule, whichever timestep comes next).
std::vector<int64_t> step_targets(const std::vector<int64_t>& ts, int64_t T, int64_t steps, const std::string& grid);

// x0 after static clipping to [-bound, bound] / dynamic thresholding (s = max(bound, percentile of |x0|),
// x0 -> clamp(x0, -s, s) * bound / s). Ref: Saharia et al. 2022 (Imagen), sec. 2.3.
torch::Tensor threshold_x0(const torch::Tensor& x0, bool clip, double dynamic_percentile, double bound = 1.0);
// The per-sample s of dynamic thresholding, [B].
torch::Tensor dynamic_bound(const torch::Tensor& x0, double percentile, double bound);

// Each sampler's step t -> s as coefficients of x_t, x0, eps, the previous prediction and fresh noise
// (ops::UpdateCoefficients; the sampler update op applies them). ab_s may be 1 for the last step.
// Ref: Ho et al. 2020, eq. 6-7 (posterior mean and variance beta_tilde), generalised to skipped steps.
ops::UpdateCoefficients ddpm_coefficients(double ab_t, double ab_s, bool with_noise);
// Ref: Song et al. 2021 (DDIM), eq. 12 with sigma from eq. 16 scaled by eta.
ops::UpdateCoefficients ddim_coefficients(double ab_t, double ab_s, double eta, bool with_noise);
// Ref: Lu et al. 2022 (DPM-Solver++), algorithm 2 (multistep second order, data prediction); the
// previous step's prediction (alpha_bar ab_prev) enters as `prev`; none on the first step (first order).
ops::UpdateCoefficients dpmpp2m_coefficients(double ab_t, double ab_s, bool with_prev, double ab_prev);

// The same steps on given x0 and eps, for tests against closed forms.
torch::Tensor ddpm_step(const torch::Tensor& x_t, const torch::Tensor& x0, double ab_t, double ab_s,
                        const std::optional<torch::Tensor>& noise);
torch::Tensor ddim_step(const torch::Tensor& x0, const torch::Tensor& eps, double ab_t, double ab_s, double eta,
                        const std::optional<torch::Tensor>& noise);
torch::Tensor dpmpp2m_step(const torch::Tensor& x_t, const torch::Tensor& x0, double ab_t, double ab_s,
                           const std::optional<torch::Tensor>& x0_prev, double ab_prev);

// The network's outputs for one step: the conditional one and, with classifier-free guidance
// (classes given and w != 1), the unconditional one (null class), from one forward of both.
struct NetworkOutputs {
  NetworkOutputs(torch::Tensor c, std::optional<torch::Tensor> u = std::nullopt) : cond(std::move(c)), uncond(std::move(u)) {}
  torch::Tensor cond;
  std::optional<torch::Tensor> uncond;
};
NetworkOutputs network_outputs(const ModelFn& model, const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& classes,
                               int64_t null_class, double guidance);

// Rectified-flow integration from x at t = grid.front() to grid.back() ("euler" or "heun"), each step
// one sampler update: guidance w, and the x0 = x_t - t v the velocity implies clipped/thresholded as
// in the diffusion samplers (`clip` false and percentile 0: the velocity as it is).
using VelocityFn = std::function<NetworkOutputs(const torch::Tensor& x, double t)>;
struct FlowUpdate {
  double guidance = 1.0;
  bool clip = false;
  double dynamic_threshold = 0, bound = 1.0;
};
torch::Tensor rflow_integrate(const VelocityFn& v, torch::Tensor x, const std::vector<double>& grid, const std::string& method,
                              const FlowUpdate& update = {}, const std::function<void(int64_t, int64_t)>& on_step = nullptr);

// Rectified-flow sampling (euler or heun) from x at t = 1; the network gets the time as 1000 t (float).
torch::Tensor sample_rflow(double shift, const ModelFn& model, torch::Tensor x, const torch::Tensor& classes, int64_t null_class,
                           const SamplerParams& params, const std::function<void(int64_t, int64_t)>& on_step = nullptr);

// Network evaluations of one volume with these settings, guidance aside (x2 with guidance): the
// visited timesteps of the diffusion samplers on their grid, one per step for euler, two for heun.
int64_t network_evaluations(const SamplerParams& params, const NoiseSchedule& schedule);

// Runs the sampler from x_T. `noise(i)` gives the fresh noise of step i (DDPM, DDIM with eta > 0);
// `classes` are the class ids (or empty for an unconditional model); `null_class` the id of the
// unconditional branch. `on_step(i, n)` reports progress.
torch::Tensor sample(const NoiseSchedule& schedule, Prediction prediction, const ModelFn& model, torch::Tensor x_T,
                     const torch::Tensor& classes, int64_t null_class, const SamplerParams& params,
                     const std::function<torch::Tensor(int64_t)>& noise,
                     const std::function<void(int64_t, int64_t)>& on_step = nullptr);

}  // namespace meddiff
