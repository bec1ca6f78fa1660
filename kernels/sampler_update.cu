// One grid-stride pass of the sampler update (see kernels/sampler_update.h).
#include "kernels/sampler_update.h"

#include "kernels/cuda_check.h"

namespace meddiff::kernels {
namespace {

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
      x0 = fminf(fmaxf(x0, -b), b) / b * a.clip;
    } else if (a.clip > 0.f) {
      x0 = fminf(fmaxf(x0, -a.clip), a.clip);
    }
    float e;
    if (a.kind == 3) e = clipped && a.s > 0.f ? (x - x0) / a.s : o;
    else e = (x - a.a * x0) / a.s;
    float r = a.cx * x + a.c0 * x0 + a.ce * e;
    if (a.prev) r += a.cp * a.prev[i];
    if (a.noise) r += a.cn * a.noise[i];
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
