#pragma once
// Nearest codebook entry of each vector: argmin_k ||z_n - e_k||^2, with the squared distance.
// Never materialises the [N, K] distance matrix of the whole input: rows are processed in chunks
// sized so that a chunk's distances stay under `max_chunk_bytes`. Always fp32 (inputs of another
// dtype are converted; CUDA autocast is switched off inside), so bf16 training and fp32 inference
// assign the same codes.
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

// Turns CUDA autocast off for its lifetime (numerically sensitive parts run in fp32).
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
