#pragma once
// Multi-head attention softmax(q k^T / sqrt(d)) v over token sequences, as a LibTorch op,
// meddiff::attention_into (lib/ops/README.md): out = beta * out + alpha * attention(q, k, v) for
// q [..., Lq, d], k and v [..., Lk, d] with up to four leading batch dimensions, any strides (the
// models pass permuted views of their qkv convolution's output and of the output buffer).
//  - LibTorch path (CPU; CUDA when the kernel does not run; autograd): scaled_dot_product_attention,
//    which picks a fused kernel (flash attention on the CPU and on CUDA, or memory-efficient
//    attention) only for contiguous 4-D inputs, so q, k and v are copied contiguous first.
//  - CUDA kernel (kernels/attention.cu; head dims 16/32/64/128; fp32, fp16, bf16): reads the strided
//    views in place and writes (or accumulates into) the strided output, no copies. Forward only:
//    with autograd recording the LibTorch path runs and its backward is LibTorch's. Opt-in
//    (MEDDIFF_KERNELS, see kernel_support.h) until measured faster than LibTorch's SDPA.
#include <torch/torch.h>

namespace meddiff::ops {

void attention_into(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, torch::Tensor& out, double alpha = 1.0,
                    double beta = 0.0);
// The attention as a new tensor [..., Lq, d].
torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);
// Views of q, k, v and out laid out [B, heads, dh, D, H, W] (a qkv convolution's output, viewed):
//  - spatial_tokens: [B, heads, D*H*W, dh], for full 3-D attention over every voxel;
//  - axial_order(axis): the permutation to [B, heads, o1, o2, L, dh] with `axis` (3, 4 or 5) as the
//    sequence and the other two spatial axes as batch dimensions.
torch::Tensor spatial_tokens(const torch::Tensor& z);
std::vector<int64_t> axial_order(int64_t axis);
// Axial attention in that layout: every token attends along its row in W, in H and in D and out is
// the mean of the three (Ho et al. 2019, "Axial attention in multidimensional transformers", in
// parallel form), accumulated into out through attention_into (alpha 1/3).
void axial_attention_into(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, torch::Tensor& out);
// LibTorch's scaled_dot_product_attention on [..., L, d] with every batch dimension merged into one,
// [1, n, L, d]; n is split into calls of at most `max_batch` (SDPA's fused CUDA kernels launch n blocks
// along a grid dimension limited to 65,535). Returns [1, n, Lq, dv].
constexpr int64_t kSdpaMaxBatch = 65535;
torch::Tensor sdpa_chunked(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t max_batch = kSdpaMaxBatch);
// Plain softmax(q k^T / sqrt(d)) v, for tests.
torch::Tensor attention_reference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);

}  // namespace meddiff::ops
