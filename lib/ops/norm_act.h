#pragma once
// GroupNorm with its affine weights, then FiLM (a per-sample, per-channel scale and shift), then
// SiLU: y = silu(GN(x) * (1 + scale) + shift), the chain before every 3-D convolution of the U-Net
// and the VQ-GAN. scale and shift [B, C] are optional (no FiLM), SiLU can be left out (the attention
// blocks' plain norm). A LibTorch op, meddiff::norm_act (lib/ops/README.md): LibTorch's group_norm,
// mul, add and silu on the CPU and wherever the kernel does not run; on CUDA the fused kernel
// (kernels/norm_act.cu; fp32, fp16, bf16, any group count) reads x once for the statistics and once
// to write y. The kernel is forward only: with autograd recording (training) the LibTorch chain runs
// on every device and its backward is LibTorch's.
#include <torch/torch.h>

namespace meddiff::ops {

torch::Tensor norm_act(const torch::nn::GroupNorm& norm, const torch::Tensor& x, const torch::Tensor& scale = {},
                       const torch::Tensor& shift = {}, bool silu = true);
// The op itself, for tests: groups, weight and bias (optional, [C]) and eps as torch::group_norm takes them.
torch::Tensor norm_act(const torch::Tensor& x, int64_t groups, const torch::Tensor& weight, const torch::Tensor& bias, double eps,
                       const torch::Tensor& scale, const torch::Tensor& shift, bool silu);

}  // namespace meddiff::ops
