#include "diffusion/samplers.h"

#include "core/error.h"

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
  if (grid != "uniform" && grid != "logsnr" && grid != "karras" && grid != "leading" && grid != "monai")
    fail("grid must be uniform, logsnr, karras, leading or monai (got '{}')", grid);
  if (T == 0 && grid != "uniform") fail("grid {}: rectified flow uses its own time grid (ldm.rflow_shift); use uniform", grid);
  if (!(guidance >= 0)) fail("guidance must not be negative (got {})", guidance);
  if (!(dynamic_threshold == 0 || (dynamic_threshold > 0.5 && dynamic_threshold < 1)))
    fail("dynamic threshold percentile must be 0 (off) or within (0.5, 1), got {}", dynamic_threshold);
}

int64_t default_steps(const std::string& sampler, int64_t T) {
  if (sampler == "ddpm") return T;
  if (sampler == "ddim" || sampler == "dpmpp2m") return std::min<int64_t>(10, T);
  if (sampler == "euler" || sampler == "heun") return 5;
  fail("unknown sampler '{}'", sampler);
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
  if (grid == "leading") {
    // MONAI Generative's DDIM / DDPM set_timesteps: every (T / steps)-th timestep from 0, largest first
    const int64_t ratio = T / steps;
    if (ratio < 1) fail("grid leading: {} steps is more than the {} timesteps", steps, T);
    std::vector<int64_t> ts;
    for (int64_t i = steps - 1; i >= 0; --i) ts.push_back(i * ratio);
    return ts;
  }
  if (grid == "monai") {
    // MONAI's DDIM / DDPM schedulers: round(linspace(T - 1, 0, steps)) in float32
    auto t = torch::linspace(static_cast<double>(T - 1), 0.0, steps, torch::kFloat).round().to(torch::kLong).contiguous();
    return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
  }
  if (grid != "logsnr" && grid != "karras") fail("grid must be uniform, logsnr, karras, leading or monai (got '{}')", grid);
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

std::vector<int64_t> step_targets(const std::vector<int64_t>& ts, int64_t T, int64_t steps, const std::string& grid) {
  std::vector<int64_t> to;
  for (size_t i = 0; i < ts.size(); ++i) {
    if (grid == "monai") to.push_back(std::max<int64_t>(-1, ts[i] - T / steps));
    else to.push_back(i + 1 < ts.size() ? ts[i + 1] : -1);
  }
  return to;
}

int64_t network_evaluations(const SamplerParams& p, const NoiseSchedule& schedule) {
  if (p.sampler == "heun") return 2 * p.steps;
  if (p.sampler == "euler") return p.steps;
  return static_cast<int64_t>(grid_timesteps(schedule, p.steps, p.grid).size());
}

torch::Tensor dynamic_bound(const torch::Tensor& x0, double p, double bound) {
  auto flat = x0.abs().reshape({x0.size(0), -1});
  auto s = std::get<0>(flat.kthvalue(std::max<int64_t>(1, static_cast<int64_t>(std::ceil(p * flat.size(1)))), 1));
  return s.clamp_min(bound);
}

torch::Tensor threshold_x0(const torch::Tensor& x0, bool clip, double p, double bound) {
  if (p > 0) {
    std::vector<int64_t> shape(static_cast<size_t>(x0.dim()), 1);
    shape[0] = x0.size(0);
    auto s = dynamic_bound(x0, p, bound).view(shape);
    return x0.clamp(-s, s) / s * bound;
  }
  return clip ? x0.clamp(-bound, bound) : x0;
}

ops::UpdateCoefficients ddpm_coefficients(double ab_t, double ab_s, bool with_noise) {
  const double beta = 1 - ab_t / ab_s;  // beta of the (possibly skipped) step t -> s
  ops::UpdateCoefficients c;
  c.c0 = std::sqrt(ab_s) * beta / (1 - ab_t);
  c.cx = std::sqrt(ab_t / ab_s) * (1 - ab_s) / (1 - ab_t);
  if (with_noise) c.cn = std::sqrt(std::max(0.0, beta * (1 - ab_s) / (1 - ab_t)));  // beta_tilde
  return c;
}

ops::UpdateCoefficients ddim_coefficients(double ab_t, double ab_s, double eta, bool with_noise) {
  const double sigma = eta * std::sqrt((1 - ab_s) / (1 - ab_t)) * std::sqrt(1 - ab_t / ab_s);
  ops::UpdateCoefficients c;
  c.c0 = std::sqrt(ab_s);
  c.ce = std::sqrt(std::max(0.0, 1 - ab_s - sigma * sigma));
  if (with_noise) c.cn = sigma;
  return c;
}

ops::UpdateCoefficients dpmpp2m_coefficients(double ab_t, double ab_s, bool with_prev, double ab_prev) {
  ops::UpdateCoefficients c;
  if (ab_s >= 1.0) {  // to noise level zero: the data prediction itself
    c.c0 = 1;
    return c;
  }
  auto lambda = [](double ab) { return 0.5 * std::log(ab / (1 - ab)); };  // log(alpha / sigma)
  const double a_s = std::sqrt(ab_s), s_s = std::sqrt(1 - ab_s), s_t = std::sqrt(1 - ab_t);
  const double h = lambda(ab_s) - lambda(ab_t);
  // x_s = (sigma_s / sigma_t) x_t - alpha_s (e^{-h} - 1) D, D = (1 + 1/(2r)) x0 - 1/(2r) x0_prev
  const double k = -a_s * std::expm1(-h);
  c.cx = s_s / s_t;
  c.c0 = k;
  if (with_prev) {
    const double r = (lambda(ab_t) - lambda(ab_prev)) / h;
    c.c0 = k * (1 + 1 / (2 * r));
    c.cp = -k / (2 * r);
  }
  return c;
}

torch::Tensor ddpm_step(const torch::Tensor& x_t, const torch::Tensor& x0, double ab_t, double ab_s,
                        const std::optional<torch::Tensor>& noise) {
  return ops::combine(ddpm_coefficients(ab_t, ab_s, noise.has_value()), x_t, x0, std::nullopt, std::nullopt, noise);
}

torch::Tensor ddim_step(const torch::Tensor& x0, const torch::Tensor& eps, double ab_t, double ab_s, double eta,
                        const std::optional<torch::Tensor>& noise) {
  const bool with_noise = noise.has_value() && eta > 0;
  return ops::combine(ddim_coefficients(ab_t, ab_s, eta, with_noise), std::nullopt, x0, eps, std::nullopt,
                      with_noise ? noise : std::nullopt);
}

torch::Tensor dpmpp2m_step(const torch::Tensor& x_t, const torch::Tensor& x0, double ab_t, double ab_s,
                           const std::optional<torch::Tensor>& x0_prev, double ab_prev) {
  return ops::combine(dpmpp2m_coefficients(ab_t, ab_s, x0_prev.has_value(), ab_prev), x_t, x0, std::nullopt, x0_prev);
}

NetworkOutputs network_outputs(const ModelFn& model, const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& classes,
                               int64_t null_class, double guidance) {
  const int64_t B = x.size(0);
  if (!classes.defined() || classes.numel() == 0 || guidance == 1.0) return {model(x, t, classes).to(x.dtype())};
  // Ref: Ho & Salimans 2022, eq. 6: eps~ = (1 + w') eps(c) - w' eps(null), here with w = 1 + w'.
  auto both = model(torch::cat({x, x}), torch::cat({t, t}), torch::cat({classes, torch::full_like(classes, null_class)})).to(x.dtype());
  return {both.slice(0, 0, B), both.slice(0, B, 2 * B)};
}

namespace {
// One sampler update; with dynamic thresholding, a first pass gives x0 for the per-sample bound.
ops::UpdateResult update(const torch::Tensor& x, const NetworkOutputs& o, const ops::OptTensor& prev, const ops::OptTensor& noise,
                         ops::SamplerUpdate u, double dynamic_percentile) {
  ops::OptTensor bound;
  if (dynamic_percentile > 0) {
    ops::SamplerUpdate first = u;
    first.clip = 0;
    first.c = {};
    first.want_x0 = true;
    first.want_e = false;
    auto x0 = ops::sampler_update(x, o.cond, o.uncond, std::nullopt, std::nullopt, std::nullopt, first).x0;
    bound = dynamic_bound(x0, dynamic_percentile, u.clip);
  }
  return ops::sampler_update(x, o.cond, o.uncond, prev, noise, bound, u);
}
}  // namespace

torch::Tensor rflow_integrate(const VelocityFn& v, torch::Tensor x, const std::vector<double>& grid, const std::string& method,
                              const FlowUpdate& f, const std::function<void(int64_t, int64_t)>& on_step) {
  if (method != "euler" && method != "heun") fail("rectified flow: sampler must be euler or heun (got '{}')", method);
  const int64_t n = static_cast<int64_t>(grid.size()) - 1;
  auto settings = [&](double t, ops::UpdateCoefficients c, bool want_e) {
    ops::SamplerUpdate u;
    u.kind = ops::OutputKind::Flow;
    u.guidance = f.guidance;
    u.s = t;
    const bool clips = t > 0 && (f.clip || f.dynamic_threshold > 0);  // at t = 0 the velocity is used as it is
    u.clip = clips ? f.bound : 0;
    u.c = c;
    u.want_e = want_e;
    return std::make_pair(u, clips ? f.dynamic_threshold : 0.0);
  };
  for (int64_t i = 0; i < n; ++i) {
    const double t = grid[static_cast<size_t>(i)], s = grid[static_cast<size_t>(i + 1)], h = s - t;
    const bool heun = method == "heun";
    auto [u1, p1] = settings(t, {1, 0, h, 0, 0}, heun);  // x + h v(x, t)
    auto r = update(x, v(x, t), std::nullopt, std::nullopt, u1, p1);
    if (heun) {  // x + h/2 (v1 + v2) = x_pred - h/2 v1 + h/2 v(x_pred, s)
      auto [u2, p2] = settings(s, {1, 0, 0.5 * h, -0.5 * h, 0}, false);
      x = update(r.out, v(r.out, s), r.e, std::nullopt, u2, p2).out;
    } else {
      x = r.out;
    }
    if (on_step) on_step(i + 1, n);
  }
  return x;
}

torch::Tensor sample_rflow(double shift, const ModelFn& model, torch::Tensor x, const torch::Tensor& classes, int64_t null_class,
                           const SamplerParams& p, const std::function<void(int64_t, int64_t)>& on_step) {
  p.validate(0);
  torch::NoGradGuard ng;
  const int64_t B = x.size(0);
  VelocityFn v = [&](const torch::Tensor& xt, double t) {
    auto tt = torch::full({B}, 1000.0 * t, torch::TensorOptions().dtype(torch::kFloat).device(xt.device()));
    return network_outputs(model, xt, tt, classes, null_class, p.guidance);
  };
  FlowUpdate f;
  f.guidance = p.guidance;
  f.clip = p.clip_x0;
  f.dynamic_threshold = p.dynamic_threshold;
  f.bound = p.x0_bound;
  return rflow_integrate(v, x, rflow_time_grid(p.steps, shift), p.sampler, f, on_step);
}

namespace {
ops::OutputKind output_kind(Prediction p) {
  switch (p) {
    case Prediction::Eps: return ops::OutputKind::Eps;
    case Prediction::X0: return ops::OutputKind::X0;
    default: return ops::OutputKind::V;
  }
}
}  // namespace

torch::Tensor sample(const NoiseSchedule& schedule, Prediction prediction, const ModelFn& model, torch::Tensor x,
                     const torch::Tensor& classes, int64_t null_class, const SamplerParams& p,
                     const std::function<torch::Tensor(int64_t)>& noise, const std::function<void(int64_t, int64_t)>& on_step) {
  p.validate(schedule.T);
  torch::NoGradGuard ng;
  auto ts = grid_timesteps(schedule, p.steps, p.grid);
  const auto targets = step_targets(ts, schedule.T, p.steps, p.grid);
  const int64_t B = x.size(0);
  ops::OptTensor x0_prev;
  double ab_prev = 0;
  for (size_t i = 0; i < ts.size(); ++i) {
    int64_t t = ts[i];
    double ab_t = schedule.alpha_bar(t);
    double ab_s = schedule.alpha_bar(targets[i]);  // 1 at the clean end
    auto tt = torch::full({B}, t, torch::TensorOptions().dtype(torch::kLong).device(x.device()));
    auto out = network_outputs(model, x, tt, classes, null_class, p.guidance);
    const bool last = i + 1 == ts.size();
    ops::SamplerUpdate u;
    u.kind = output_kind(prediction);
    u.guidance = p.guidance;
    u.a = std::sqrt(ab_t);
    u.s = std::sqrt(1 - ab_t);
    u.clip = p.clip_x0 || p.dynamic_threshold > 0 ? p.x0_bound : 0;
    ops::OptTensor z, prev;
    if (p.sampler == "ddpm") {
      if (!last) z = noise(static_cast<int64_t>(i));
      u.c = ddpm_coefficients(ab_t, ab_s, z.has_value());
    } else if (p.sampler == "ddim") {
      if (p.eta > 0 && !last) z = noise(static_cast<int64_t>(i));
      u.c = ddim_coefficients(ab_t, ab_s, p.eta, z.has_value());
    } else {
      u.c = dpmpp2m_coefficients(ab_t, ab_s, x0_prev.has_value(), ab_prev);
      prev = x0_prev;
      u.want_x0 = true;
    }
    auto r = update(x, out, prev, z, u, p.dynamic_threshold);
    x = r.out;
    if (u.want_x0) {
      x0_prev = r.x0;
      ab_prev = ab_t;
    }
    if (on_step) on_step(static_cast<int64_t>(i + 1), static_cast<int64_t>(ts.size()));
  }
  return x;
}

}  // namespace meddiff
