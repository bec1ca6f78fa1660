#include "ops/sampler_step.h"

#include "core/error.h"
#include "ops/kernel_support.h"

#ifdef MEDDIFF_HAVE_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "kernels/sampler_step.h"
#endif

namespace meddiff::ops {

torch::Tensor sampler_step_reference(const torch::Tensor& x, double a, const torch::Tensor& y, double b,
                                     const std::optional<torch::Tensor>& z, double c) {
  auto out = x * a + y * b;
  if (z) out = out + *z * c;
  return out;
}

bool sampler_step_uses_kernel(const torch::Tensor& x) {
#ifdef MEDDIFF_HAVE_CUDA
  if (!x.is_cuda() || x.scalar_type() != torch::kFloat) return false;
  return kernel_built_for(x.device(), "sampler_step", [] { return kernels::sampler_step_available(); });
#else
  (void)x;
  return false;
#endif
}

torch::Tensor sampler_step(const torch::Tensor& x, double a, const torch::Tensor& y, double b,
                           const std::optional<torch::Tensor>& z, double c) {
  if (x.sizes() != y.sizes() || (z && z->sizes() != x.sizes()))
    fail("sampler_step: shapes differ ({} vs {})", fmt::join(x.sizes(), "x"), fmt::join(y.sizes(), "x"));
#ifdef MEDDIFF_HAVE_CUDA
  if (sampler_step_uses_kernel(x) && y.scalar_type() == torch::kFloat && (!z || z->scalar_type() == torch::kFloat)) {
    c10::cuda::CUDAGuard guard(x.device());
    auto xc = x.contiguous(), yc = y.contiguous();
    torch::Tensor zc = z ? z->contiguous() : torch::Tensor();
    auto out = torch::empty_like(xc);
    kernels::launch_sampler_step(xc.data_ptr<float>(), yc.data_ptr<float>(), z ? zc.data_ptr<float>() : nullptr,
                                 out.data_ptr<float>(), xc.numel(), static_cast<float>(a), static_cast<float>(b),
                                 static_cast<float>(c), at::cuda::getCurrentCUDAStream());
    return out;
  }
#endif
  return sampler_step_reference(x, a, y, b, z, c);
}

}  // namespace meddiff::ops
