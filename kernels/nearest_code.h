#pragma once
// Fused nearest-code search (kernels/nearest_code.cu): for each row z_n of z [N, E] (float32,
// contiguous) the index of the codebook row [K, E] with the smallest squared L2 distance (the first
// one on ties) and that distance, accumulated in float32 as sum_e (z_ne - c_ke)^2. The codebook is
// streamed through shared memory in tiles of codes; no N x K matrix exists. E <= 64.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace meddiff::kernels {

constexpr int kNearestCodeMaxDim = 64;

bool nearest_code_available();
void launch_nearest_code(const float* z, const float* codebook, int64_t n, int64_t k, int e, int64_t* index,
                         float* distance, cudaStream_t stream);

}  // namespace meddiff::kernels
