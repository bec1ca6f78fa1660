#pragma once
// Building blocks shared by the VQ-GAN and the U-Net.
#include "models/recompute.h"

#include <torch/torch.h>

#include <array>

namespace meddiff {

using Int3 = std::array<int64_t, 3>;

// GroupNorm with the largest group count <= 32 that divides `channels` (reference: 32 groups, eps 1e-6).
torch::nn::GroupNorm group_norm(int64_t channels, double eps = 1e-6);

// Conv3d with "same" replicate padding for stride 1, and exact halving for kernel 4 / stride 2
// (per axis), as the reference's SamePadConv3d.
struct SamePadConv3dImpl : torch::nn::Module {
  SamePadConv3dImpl(int64_t in, int64_t out, std::array<int64_t, 3> kernel, std::array<int64_t, 3> stride);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv3d conv{nullptr};
  std::vector<int64_t> pad;  // F.pad order: (W_lo, W_hi, H_lo, H_hi, D_lo, D_hi)
};
TORCH_MODULE(SamePadConv3d);

// GN -> SiLU -> conv3 -> GN -> SiLU -> conv3, plus the input (1x1x1 projection when channels change).
struct ResBlock3dImpl : torch::nn::Module, Recomputable {
  ResBlock3dImpl(int64_t in, int64_t out);
  torch::Tensor forward(const torch::Tensor& x);  // checkpointed when `checkpointing` (training)
  torch::Tensor forward_impl(const torch::Tensor& x);
  BlockFn fn;
  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  SamePadConv3d conv1{nullptr}, conv2{nullptr};
  torch::nn::Conv3d skip{nullptr};
};
TORCH_MODULE(ResBlock3d);

}  // namespace meddiff
