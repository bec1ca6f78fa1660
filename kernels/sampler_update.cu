// One grid-stride pass of the sampler update (see kernels/sampler_update.h).
#include "kernels/sampler_update.h"

#include "kernels/cuda_check.h"

namespace meddiff::kernels {
namespace {

// LibTorch's clamp: a NaN value or bound gives NaN (fminf/fmaxf would return the bound instead).
__device__ __forceinline__ float clamp_nan(float v, float lo, float hi) {
  if (isnan(v) || isnan(lo) || isnan(hi)) return nanf("");
  return fminf(fmaxf(v, lo), hi);
}

__global__ void sampler_update_kernel(const SamplerUpdateArgs a) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < a.n; i += stride) {
    const float x = a.x[i];
    float o = a.cond[i];
    if (a.uncond) {
      const float u = a.uncond[i];
      o = fmaf(a.guidance, o - u, u);
    }
    float x0;
    switch (a.kind) {
      case 0: x0 = (x - a.s * o) / a.a; break;
      case 1: x0 = o; break;
      case 2: x0 = a.a * x - a.s * o; break;
      default: x0 = x - a.s * o; break;
    }
    const bool clipped = a.bound != nullptr || a.clip > 0.f;
    if (a.bound) {
      const float b = a.bound[i / a.per_sample];
      x0 = clamp_nan(x0, -b, b) / b * a.clip;
    } else if (a.clip > 0.f) {
      x0 = clamp_nan(x0, -a.clip, a.clip);
    }
    float e;
    if (a.kind == 3) e = clipped && a.s > 0.f ? (x - x0) / a.s : o;
    else e = (x - a.a * x0) / a.s;
    // As the LibTorch path (ops::combine): a term with coefficient 0 is left out, so 0 * inf or 0 * NaN
    // in an unused term does not turn the result into NaN, and a NaN in a used term stays NaN.
    float r = 0.f;
    if (a.cx != 0.f) r += a.cx * x;
    if (a.c0 != 0.f) r += a.c0 * x0;
    if (a.ce != 0.f) r += a.ce * e;
    if (a.prev && a.cp != 0.f) r += a.cp * a.prev[i];
    if (a.noise && a.cn != 0.f) r += a.cn * a.noise[i];
    a.out[i] = r;
    if (a.x0_out) a.x0_out[i] = x0;
    if (a.e_out) a.e_out[i] = e;
  }
}

}  // namespace

bool sampler_update_available() { return kernel_loads(sampler_update_kernel); }

void launch_sampler_update(const SamplerUpdateArgs& a, cudaStream_t stream) {
  if (a.n == 0) return;
  const int threads = 256;
  sampler_update_kernel<<<grid_for(a.n, threads), threads, 0, stream>>>(a);
  check_launch("sampler_update");
}

}  // namespace meddiff::kernels
