#pragma once
// The sampler update, one op per step for every sampler (DDPM, DDIM, DPM-Solver++(2M), rectified-flow
// Euler and Heun): from the network's conditional and unconditional outputs,
//   o   = uncond + w (cond - uncond)            (classifier-free guidance; cond alone without uncond)
//   x0  = the clean sample o implies at x       (eps: (x - s o) / a; x0: o; v: a x - s o; flow: x - t o)
//   x0  = clamp(x0, -clip, clip), or with a per-sample `bound` b: clamp(x0, -b, b) * clip / b
//   e   = the noise (x - a x0) / s after clipping; for flow the velocity (x - x0) / t (o itself when
//         nothing is clipped or t = 0)
//   out = cx x + c0 x0 + ce e + cp prev + cn noise
// (a = sqrt(alpha_bar), s = sqrt(1 - alpha_bar), or s = t for flow). A LibTorch op,
// meddiff::sampler_update (lib/ops/README.md): LibTorch arithmetic on the CPU, in the inputs' dtype
// (the tests use float64), and wherever the kernel does not run; on CUDA for float32 the fused
// kernel (kernels/sampler_update.cu) reads every input once and writes out (and x0, e when asked).
#include <torch/torch.h>

#include <optional>

namespace meddiff::ops {

enum class OutputKind : int64_t { Eps = 0, X0 = 1, V = 2, Flow = 3 };

struct UpdateCoefficients {
  double cx = 0, c0 = 0, ce = 0, cp = 0, cn = 0;
};

struct SamplerUpdate {
  OutputKind kind = OutputKind::Eps;
  double guidance = 1.0;  // w
  double a = 1.0, s = 1.0;
  double clip = 0.0;      // <= 0: no clipping
  UpdateCoefficients c;
  bool want_x0 = false, want_e = false;
};

struct UpdateResult {
  torch::Tensor out, x0, e;  // x0 and e only when asked for
};

using OptTensor = std::optional<torch::Tensor>;

UpdateResult sampler_update(const torch::Tensor& x, const torch::Tensor& cond, const OptTensor& uncond, const OptTensor& prev,
                            const OptTensor& noise, const OptTensor& bound, const SamplerUpdate& u);
// The last line alone: cx x + c0 x0 + ce e + cp prev + cn noise (absent terms skipped).
torch::Tensor combine(const UpdateCoefficients& c, const OptTensor& x, const OptTensor& x0, const OptTensor& e,
                      const OptTensor& prev = std::nullopt, const OptTensor& noise = std::nullopt);

}  // namespace meddiff::ops
