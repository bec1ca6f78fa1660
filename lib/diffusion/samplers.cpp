#include "diffusion/samplers.h"

#include "core/error.h"
#include "ops/sampler_step.h"

#include <cmath>

namespace meddiff {

void SamplerParams::validate(int64_t T) const {
  if (T == 0) {  // rectified flow
    if (sampler != "euler" && sampler != "heun")
      fail("sampler must be euler or heun for a rectified-flow model (got '{}')", sampler);
    if (steps < 1 || steps > 10000) fail("steps must be within 1..10000, got {}", steps);
  } else {
    if (sampler != "ddpm" && sampler != "ddim" && sampler != "dpmpp2m")
      fail("sampler must be ddpm, ddim or dpmpp2m for a diffusion model (got '{}'; euler and heun are for rectified flow)", sampler);
    if (steps < 1 || steps > T) fail("steps must be within 1..{} (the model's timesteps), got {}", T, steps);
  }
  if (!(eta >= 0)) fail("eta must not be negative (got {})", eta);
  if (grid != "uniform" && grid != "logsnr" && grid != "karras") fail("grid must be uniform, logsnr or karras (got '{}')", grid);
  if (T == 0 && grid != "uniform") fail("grid {}: rectified flow uses its own time grid (ldm.rflow_shift); use uniform", grid);
  if (!(guidance >= 0)) fail("guidance must not be negative (got {})", guidance);
  if (!(dynamic_threshold == 0 || (dynamic_threshold > 0.5 && dynamic_threshold < 1)))
    fail("dynamic threshold percentile must be 0 (off) or within (0.5, 1), got {}", dynamic_threshold);
}

std::vector<int64_t> sampling_timesteps(int64_t T, int64_t steps) {
  std::vector<int64_t> ts;
  for (int64_t i = 0; i < steps; ++i) {
    double f = steps == 1 ? 0.0 : static_cast<double>(i) / static_cast<double>(steps - 1);
    auto t = static_cast<int64_t>(std::llround((1.0 - f) * static_cast<double>(T - 1)));
    if (ts.empty() || t < ts.back()) ts.push_back(t);
  }
  return ts;
}

std::vector<int64_t> grid_timesteps(const NoiseSchedule& schedule, int64_t steps, const std::string& grid) {
  const int64_t T = schedule.T;
  if (grid == "uniform") return sampling_timesteps(T, steps);
  if (grid != "logsnr" && grid != "karras") fail("grid must be uniform, logsnr or karras (got '{}')", grid);
  // the grid's coordinate of each timestep: decreasing in t for logsnr, increasing for karras
  auto coord = [&](int64_t t) {
    const double ab = schedule.alpha_bar(t);
    return grid == "logsnr" ? std::log(ab / (1 - ab)) : std::pow(std::sqrt((1 - ab) / ab), 1.0 / 7.0);
  };
  std::vector<double> c(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) c[static_cast<size_t>(t)] = coord(t);
  const double first = c.back(), last = c.front();  // at t = T-1 and t = 0
  std::vector<int64_t> ts;
  for (int64_t i = 0; i < steps; ++i) {
    const double f = steps == 1 ? 0.0 : static_cast<double>(i) / static_cast<double>(steps - 1);
    const double target = first + f * (last - first);
    int64_t best = 0;
    for (int64_t t = 1; t < T; ++t)
      if (std::abs(c[static_cast<size_t>(t)] - target) < std::abs(c[static_cast<size_t>(best)] - target)) best = t;
    if (ts.empty() || best < ts.back()) ts.push_back(best);
  }
  return ts;
}

int64_t network_evaluations(const SamplerParams& p, const NoiseSchedule& schedule) {
  if (p.sampler == "heun") return 2 * p.steps;
  if (p.sampler == "euler") return p.steps;
  return static_cast<int64_t>(grid_timesteps(schedule, p.steps, p.grid).size());
}

torch::Tensor threshold_x0(const torch::Tensor& x0, bool clip, double p, double bound) {
  if (p > 0) {
    auto flat = x0.abs().reshape({x0.size(0), -1});
    auto s = std::get<0>(flat.kthvalue(std::max<int64_t>(1, static_cast<int64_t>(std::ceil(p * flat.size(1)))), 1));
    s = s.clamp_min(bound);
    std::vector<int64_t> shape(static_cast<size_t>(x0.dim()), 1);
    shape[0] = x0.size(0);
    s = s.view(shape);
    return x0.clamp(-s, s) / s * bound;
  }
  return clip ? x0.clamp(-bound, bound) : x0;
}

torch::Tensor ddpm_step(const torch::Tensor& x_t, const torch::Tensor& x0, double ab_t, double ab_s,
                        const std::optional<torch::Tensor>& noise) {
  double beta = 1 - ab_t / ab_s;  // beta of the (possibly skipped) step t -> s
  double c_x0 = std::sqrt(ab_s) * beta / (1 - ab_t);
  double c_xt = std::sqrt(ab_t / ab_s) * (1 - ab_s) / (1 - ab_t);
  double var = beta * (1 - ab_s) / (1 - ab_t);  // beta_tilde
  if (noise && var > 0) return ops::sampler_step(x0, c_x0, x_t, c_xt, *noise, std::sqrt(var));
  return ops::sampler_step(x0, c_x0, x_t, c_xt);
}

torch::Tensor ddim_step(const torch::Tensor& x0, const torch::Tensor& eps, double ab_t, double ab_s, double eta,
                        const std::optional<torch::Tensor>& noise) {
  double sigma = eta * std::sqrt((1 - ab_s) / (1 - ab_t)) * std::sqrt(1 - ab_t / ab_s);
  double dir = std::sqrt(std::max(0.0, 1 - ab_s - sigma * sigma));
  if (noise && sigma > 0) return ops::sampler_step(x0, std::sqrt(ab_s), eps, dir, *noise, sigma);
  return ops::sampler_step(x0, std::sqrt(ab_s), eps, dir);
}

torch::Tensor dpmpp2m_step(const torch::Tensor& x_t, const torch::Tensor& x0, double ab_t, double ab_s,
                           const std::optional<torch::Tensor>& x0_prev, double ab_prev) {
  if (ab_s >= 1.0) return x0;  // to noise level zero: the data prediction itself
  auto lambda = [](double ab) { return 0.5 * std::log(ab / (1 - ab)); };  // log(alpha / sigma)
  double a_s = std::sqrt(ab_s), s_s = std::sqrt(1 - ab_s), s_t = std::sqrt(1 - ab_t);
  double h = lambda(ab_s) - lambda(ab_t);
  torch::Tensor d = x0;
  if (x0_prev) {
    double h_prev = lambda(ab_t) - lambda(ab_prev);
    double r = h_prev / h;
    d = ops::sampler_step(x0, 1 + 1 / (2 * r), *x0_prev, -1 / (2 * r));
  }
  // x_s = (sigma_s / sigma_t) x_t - alpha_s (e^{-h} - 1) D
  return ops::sampler_step(x_t, s_s / s_t, d, -a_s * std::expm1(-h));
}

torch::Tensor guided_output(const ModelFn& model, const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& classes,
                            int64_t null_class, double guidance) {
  const int64_t B = x.size(0);
  if (!classes.defined() || classes.numel() == 0 || guidance == 1.0) return model(x, t, classes).to(torch::kFloat);
  // Ref: Ho & Salimans 2022, eq. 6: eps~ = (1 + w') eps(c) - w' eps(null), here with w = 1 + w'.
  auto both = model(torch::cat({x, x}), torch::cat({t, t}), torch::cat({classes, torch::full_like(classes, null_class)})).to(torch::kFloat);
  auto cond = both.slice(0, 0, B), uncond = both.slice(0, B, 2 * B);
  return uncond + guidance * (cond - uncond);
}

torch::Tensor sample_rflow(double shift, const ModelFn& model, torch::Tensor x, const torch::Tensor& classes, int64_t null_class,
                           const SamplerParams& p, const std::function<void(int64_t, int64_t)>& on_step) {
  p.validate(0);
  torch::NoGradGuard ng;
  const int64_t B = x.size(0);
  VelocityFn v = [&](const torch::Tensor& xt, double t) {
    auto tt = torch::full({B}, 1000.0 * t, torch::TensorOptions().dtype(torch::kFloat).device(xt.device()));
    auto out = guided_output(model, xt, tt, classes, null_class, p.guidance);
    if ((!p.clip_x0 && p.dynamic_threshold == 0) || t <= 0) return out;
    // the x0 the velocity implies, clipped like the diffusion samplers', and the velocity it leaves
    auto x0 = threshold_x0(xt - t * out, p.clip_x0, p.dynamic_threshold, p.x0_bound);
    return (xt - x0) / t;
  };
  return rflow_integrate(v, x, rflow_time_grid(p.steps, shift), p.sampler, on_step);
}

torch::Tensor sample(const NoiseSchedule& schedule, Prediction prediction, const ModelFn& model, torch::Tensor x,
                     const torch::Tensor& classes, int64_t null_class, const SamplerParams& p,
                     const std::function<torch::Tensor(int64_t)>& noise, const std::function<void(int64_t, int64_t)>& on_step) {
  p.validate(schedule.T);
  torch::NoGradGuard ng;
  auto ts = grid_timesteps(schedule, p.steps, p.grid);
  const int64_t B = x.size(0);
  std::optional<torch::Tensor> x0_prev;
  double ab_prev = 0;
  for (size_t i = 0; i < ts.size(); ++i) {
    int64_t t = ts[i];
    double ab_t = schedule.alpha_bar(t);
    double ab_s = i + 1 < ts.size() ? schedule.alpha_bar(ts[i + 1]) : 1.0;
    auto tt = torch::full({B}, t, torch::TensorOptions().dtype(torch::kLong).device(x.device()));
    torch::Tensor out = guided_output(model, x, tt, classes, null_class, p.guidance);
    auto pred = split_prediction(prediction, out, x, ab_t);
    auto x0 = threshold_x0(pred.x0, p.clip_x0, p.dynamic_threshold, p.x0_bound);
    auto eps = eps_from_x0(x0, x, ab_t);
    bool last = i + 1 == ts.size();
    if (p.sampler == "ddpm") {
      x = ddpm_step(x, x0, ab_t, ab_s, last ? std::nullopt : std::optional<torch::Tensor>(noise(static_cast<int64_t>(i))));
    } else if (p.sampler == "ddim") {
      std::optional<torch::Tensor> z;
      if (p.eta > 0 && !last) z = noise(static_cast<int64_t>(i));
      x = ddim_step(x0, eps, ab_t, ab_s, p.eta, z);
    } else {
      x = dpmpp2m_step(x, x0, ab_t, ab_s, x0_prev, ab_prev);
      x0_prev = x0;
      ab_prev = ab_t;
    }
    if (on_step) on_step(static_cast<int64_t>(i + 1), static_cast<int64_t>(ts.size()));
  }
  return x;
}

}  // namespace meddiff
