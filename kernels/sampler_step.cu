// Fused sampler update: out = a*x + b*y + c*z in one pass over memory (DDPM/DDIM/DPM-Solver steps
// are all of this form). Host launcher takes the stream; no LibTorch headers here.
#include "kernels/sampler_step.h"

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace meddiff::kernels {
namespace {

__global__ void sampler_step_kernel(const float* __restrict__ x, const float* __restrict__ y,
                                    const float* __restrict__ z, float* __restrict__ out, int64_t n, float a,
                                    float b, float c) {
  int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    float v = a * x[i] + b * y[i];
    if (z != nullptr) v += c * z[i];
    out[i] = v;
  }
}

}  // namespace

bool sampler_step_available() {
  cudaFuncAttributes attributes;
  cudaError_t err = cudaFuncGetAttributes(&attributes, sampler_step_kernel);
  if (err != cudaSuccess) cudaGetLastError();  // clear it: not having the kernel is not an error state
  return err == cudaSuccess;
}

void launch_sampler_step(const float* x, const float* y, const float* z, float* out, int64_t n, float a, float b,
                         float c, cudaStream_t stream) {
  if (n == 0) return;
  const int threads = 256;
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks > 65535LL * 16) blocks = 65535LL * 16;
  sampler_step_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(x, y, z, out, n, a, b, c);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw std::runtime_error(std::string("sampler_step kernel: ") + cudaGetErrorString(err));
}

}  // namespace meddiff::kernels
