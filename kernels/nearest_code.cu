// Nearest codebook entry per row: one thread per row holds its row in registers; the block walks
// the codebook in tiles of kTileCodes codes staged in shared memory (every thread of the block reads
// the same code at a time: a broadcast, no bank conflicts).
#include "kernels/nearest_code.h"

#include "kernels/cuda_check.h"

#include <cfloat>

namespace meddiff::kernels {
namespace {

constexpr int kThreads = 128;
constexpr int kTileCodes = 128;

template <int MaxDim>
__global__ void __launch_bounds__(kThreads) nearest_code_kernel(const float* __restrict__ z, const float* __restrict__ codebook,
                                                                int64_t n, int64_t k, int e, int64_t* __restrict__ index,
                                                                float* __restrict__ distance) {
  extern __shared__ float tile[];  // [kTileCodes, e]
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  float zr[MaxDim];
#pragma unroll
  for (int j = 0; j < MaxDim; ++j) zr[j] = (row < n && j < e) ? z[row * e + j] : 0.f;
  float best = FLT_MAX;
  int64_t best_k = 0;
  for (int64_t k0 = 0; k0 < k; k0 += kTileCodes) {
    const int codes = static_cast<int>(k - k0 < kTileCodes ? k - k0 : kTileCodes);
    __syncthreads();  // the previous tile is no longer read
    for (int i = threadIdx.x; i < codes * e; i += kThreads) tile[i] = codebook[k0 * e + i];
    __syncthreads();
    if (row < n) {
      for (int c = 0; c < codes; ++c) {
        const float* code = tile + c * e;
        float d = 0.f;
#pragma unroll
        for (int j = 0; j < MaxDim; ++j)
          if (j < e) {
            const float diff = zr[j] - code[j];
            d = fmaf(diff, diff, d);
          }
        // strict: the first code wins a tie, as LibTorch's argmin; a NaN distance (a NaN in the row or in
        // the code) wins as in LibTorch's min, which propagates the first NaN: a diverged encoder gives a
        // NaN distance here as on the CPU, not code 0 at FLT_MAX
        if (d < best || (isnan(d) && !isnan(best))) {
          best = d;
          best_k = k0 + c;
        }
      }
    }
  }
  if (row < n) {
    index[row] = best_k;
    distance[row] = best;
  }
}

template <int MaxDim>
void launch(const float* z, const float* codebook, int64_t n, int64_t k, int e, int64_t* index, float* distance,
            cudaStream_t stream) {
  const size_t shared = static_cast<size_t>(kTileCodes) * e * sizeof(float);
  const unsigned blocks = static_cast<unsigned>((n + kThreads - 1) / kThreads);
  nearest_code_kernel<MaxDim><<<blocks, kThreads, shared, stream>>>(z, codebook, n, k, e, index, distance);
}

}  // namespace

bool nearest_code_available() { return kernel_loads(nearest_code_kernel<kNearestCodeMaxDim>); }

void launch_nearest_code(const float* z, const float* codebook, int64_t n, int64_t k, int e, int64_t* index,
                         float* distance, cudaStream_t stream) {
  if (n == 0) return;
  if (e < 1 || e > kNearestCodeMaxDim || k < 1) throw std::runtime_error("nearest_code kernel: needs 1 <= E <= 64 and K >= 1");
  if (e <= 8) launch<8>(z, codebook, n, k, e, index, distance, stream);
  else if (e <= 16) launch<16>(z, codebook, n, k, e, index, distance, stream);
  else if (e <= 32) launch<32>(z, codebook, n, k, e, index, distance, stream);
  else launch<64>(z, codebook, n, k, e, index, distance, stream);
  check_launch("nearest_code");
}

}  // namespace meddiff::kernels
