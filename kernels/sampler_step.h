#pragma once
// Host launcher of the fused sampler update (kernels/sampler_step.cu): out = a*x + b*y + c*z over n
// float32 elements on `stream`; z may be null (then c is ignored).
#include <cuda_runtime_api.h>

#include <cstdint>

namespace meddiff::kernels {

// Whether this build holds code for the current device (machine code for its architecture, or PTX
// it can compile): false on GPUs the kernels were not built for.
bool sampler_step_available();

void launch_sampler_step(const float* x, const float* y, const float* z, float* out, int64_t n, float a, float b,
                         float c, cudaStream_t stream);

}  // namespace meddiff::kernels
