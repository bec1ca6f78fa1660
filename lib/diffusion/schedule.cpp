#include "diffusion/schedule.h"

#include "core/error.h"

#include <cmath>

namespace meddiff {

double NoiseSchedule::alpha_bar(int64_t t) const {
  if (t < 0) return 1.0;
  return alphas_cumprod[t].item<double>();
}

NoiseSchedule make_schedule(const std::string& kind, int64_t T, double s) {
  if (T < 2) fail("config: 'ldm.timesteps' must be at least 2 (got {})", T);
  NoiseSchedule out;
  out.kind = kind;
  out.T = T;
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  if (kind == "linear") {
    double scale = 1000.0 / static_cast<double>(T);
    out.betas = torch::linspace(scale * 1e-4, scale * 0.02, T, opts);
  } else if (kind == "scaled_linear") {
    out.betas = torch::linspace(std::sqrt(0.00085), std::sqrt(0.012), T, opts).pow(2);
  } else if (kind == "cosine") {
    auto f = [&](double t) {
      double c = std::cos((t / static_cast<double>(T) + s) / (1 + s) * M_PI / 2);
      return c * c;
    };
    std::vector<double> b(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) b[static_cast<size_t>(t)] = std::min(1 - f(double(t + 1)) / f(double(t)), 0.999);
    out.betas = torch::tensor(b, opts);
  } else {
    fail("config: 'ldm.schedule' must be linear, cosine or scaled_linear (got '{}')", kind);
  }
  out.alphas_cumprod = torch::cumprod(1 - out.betas, 0);
  return out;
}

NoiseSchedule make_monai_schedule(const std::string& kind, int64_t T, double beta_start, double beta_end) {
  if (T < 2) fail("num_train_timesteps must be at least 2 (got {})", T);
  if (!(beta_start > 0 && beta_end >= beta_start && beta_end < 1))
    fail("beta_start {} and beta_end {} must satisfy 0 < beta_start <= beta_end < 1", beta_start, beta_end);
  NoiseSchedule out;
  out.kind = kind;
  out.T = T;
  auto f32 = torch::TensorOptions().dtype(torch::kFloat);
  torch::Tensor betas;
  if (kind == "linear_beta" || kind == "linear")
    betas = torch::linspace(beta_start, beta_end, T, f32);
  else if (kind == "scaled_linear_beta" || kind == "scaled_linear")
    betas = torch::linspace(std::sqrt(beta_start), std::sqrt(beta_end), T, f32).pow(2);
  else
    fail("beta schedule '{}' is not one meddiff imports (linear_beta, scaled_linear_beta; MONAI Generative's linear, scaled_linear)", kind);
  out.alphas_cumprod = torch::cumprod(1 - betas, 0).to(torch::kDouble);  // float32 products, as MONAI's
  out.betas = betas.to(torch::kDouble);
  return out;
}

}  // namespace meddiff
