#pragma once
// The fused sampler update (kernels/sampler_update.cu): per element, in one pass that reads every
// input once,
//   o  = uncond + w (cond - uncond)       (cond alone without uncond)
//   x0 = from o and x by the output kind  (eps: (x - s o) / a; x0: o; v: a x - s o; flow: x - t o)
//   x0 = clipped to [-clip, clip], or dynamically thresholded with a per-sample bound
//   e  = the noise (x - a x0) / s, or for flow the velocity (x - x0) / t (o itself unclipped or at t = 0)
//   out = cx x + c0 x0 + ce e + cp prev + cn noise
// with x0 and e optionally written out. float32, contiguous, every tensor of x's size except bound
// ([B], one per sample of `per_sample` elements).
#include <cuda_runtime_api.h>

#include <cstdint>

namespace meddiff::kernels {

struct SamplerUpdateArgs {
  const float *x = nullptr, *cond = nullptr, *uncond = nullptr, *prev = nullptr, *noise = nullptr, *bound = nullptr;
  float *out = nullptr, *x0_out = nullptr, *e_out = nullptr;
  int64_t n = 0, per_sample = 1;
  int kind = 0;  // 0 eps, 1 x0, 2 v, 3 flow
  float guidance = 1.f, a = 1.f, s = 1.f, clip = 0.f;  // s: sigma, or t for flow; clip <= 0: none
  float cx = 0.f, c0 = 0.f, ce = 0.f, cp = 0.f, cn = 0.f;
};

bool sampler_update_available();
void launch_sampler_update(const SamplerUpdateArgs& args, cudaStream_t stream);

}  // namespace meddiff::kernels
