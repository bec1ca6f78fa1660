#pragma once
// Nearest codebook entry of each vector: argmin_k ||z_n - e_k||^2, with the squared distance.
// A LibTorch op, meddiff::nearest_code (lib/ops/README.md): on the CPU and wherever the CUDA kernel
// does not run, rows are processed in chunks sized so that a chunk's [rows, K] distances stay under
// `max_chunk_bytes` (on the CPU at most 8 MB, which keeps a chunk in cache; never the [N, K] matrix
// of the whole input); on CUDA the fused kernel
// (kernels/nearest_code.cu, E <= 64) streams the codebook through shared memory and keeps no
// distance matrix at all. Always fp32 (inputs of another dtype are converted; autocast is switched
// off inside), so bf16 training and fp32 inference assign the same codes. No gradient.
#include <torch/torch.h>

namespace meddiff::ops {

struct NearestCodes {
  torch::Tensor index;     // int64 [N]
  torch::Tensor distance;  // float [N], squared L2 distance to the chosen code
};

NearestCodes nearest_code(const torch::Tensor& z, const torch::Tensor& codebook,
                          int64_t max_chunk_bytes = int64_t{64} << 20);  // z [N, E], codebook [K, E]
// The same by brute force in float64 on the whole [N, K] matrix, for tests.
NearestCodes nearest_code_reference(const torch::Tensor& z, const torch::Tensor& codebook);

// Turns CUDA and CPU autocast off for its lifetime (numerically sensitive parts run in fp32).
class NoAutocast {
 public:
  NoAutocast();
  ~NoAutocast();
  NoAutocast(const NoAutocast&) = delete;
  NoAutocast& operator=(const NoAutocast&) = delete;

 private:
  bool prev_cuda_ = false, prev_cpu_ = false;
};

}  // namespace meddiff::ops
