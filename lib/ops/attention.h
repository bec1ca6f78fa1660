#pragma once
// Multi-head attention over token sequences: softmax(q k^T / sqrt(d)) v for q, k, v [B, heads, N, d].
// CPU: LibTorch's scaled_dot_product_attention (the reference path); CUDA: the same entry point, which
// dispatches to fused flash / memory-efficient kernels. A meddiff kernel in kernels/ can replace the
// CUDA branch without touching the models.
#include <torch/torch.h>

namespace meddiff::ops {

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);
// Plain softmax(q k^T / sqrt(d)) v, for tests.
torch::Tensor attention_reference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);

}  // namespace meddiff::ops
