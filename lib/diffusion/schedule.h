#pragma once
// Noise schedules of discrete-time diffusion: beta_t for t = 0..T-1 and the cumulative products
// alpha_bar_t = prod_{s<=t} (1 - beta_s), in double precision.
#include <torch/torch.h>

#include <string>

namespace meddiff {

struct NoiseSchedule {
  std::string kind;               // linear, cosine, scaled_linear
  int64_t T = 0;
  torch::Tensor betas;            // double [T]
  torch::Tensor alphas_cumprod;   // double [T]

  double alpha_bar(int64_t t) const;  // t = -1 gives 1 (no noise)
};

// linear: Ref: Ho et al. 2020, sec. 4: beta from 1e-4 to 0.02 (scaled by 1000/T for other T).
// cosine: Ref: Nichol & Dhariwal 2021, eq. 17: alpha_bar(t) = f(t)/f(0), f(t) = cos^2((t/T + s)/(1 + s) * pi/2),
//         betas clipped at 0.999.
// scaled_linear: Ref: Rombach et al. 2022 (Stable Diffusion): sqrt(beta) linear from sqrt(0.00085) to sqrt(0.012).
NoiseSchedule make_schedule(const std::string& kind, int64_t T, double cosine_s = 0.008);
// MONAI's beta schedules with their own end points (imported models): "linear_beta" (beta linear from
// beta_start to beta_end) and "scaled_linear_beta" (sqrt(beta) linear), computed in float32 as MONAI does
// (MONAI Generative names them "linear" and "scaled_linear").
NoiseSchedule make_monai_schedule(const std::string& kind, int64_t T, double beta_start, double beta_end);

}  // namespace meddiff
