#pragma once
// Multi-head attention over token sequences: softmax(q k^T / sqrt(d)) v for q, k, v [B, heads, N, d].
// LibTorch's scaled_dot_product_attention, which picks a fused kernel (flash attention on the CPU and
// on CUDA, or memory-efficient attention) only for inputs whose last dimension is contiguous; others
// fall back to the math path that builds the whole [B*heads, N, N] matrix. q, k and v are therefore
// made contiguous here (the models' permuted views are not). A meddiff kernel in kernels/ can replace
// the CUDA branch without touching the models.
#include <torch/torch.h>

namespace meddiff::ops {

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);
// Plain softmax(q k^T / sqrt(d)) v, for tests.
torch::Tensor attention_reference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);

}  // namespace meddiff::ops
