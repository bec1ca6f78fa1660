#pragma once
// 3-D VQ-GAN encoder: stem conv, one strided stage per factor of two (per axis), residual blocks,
// GroupNorm + SiLU, 1x1x1 projection to embedding_dim. [B, 1, D, H, W] -> [B, E, D/fd, H/fh, W/fw].
#include "models/blocks.h"
#include "models/vqgan_params.h"

namespace meddiff {

struct VQEncoderImpl : torch::nn::Module {
  VQEncoderImpl(const VQGANParams& p, int64_t image_channels);
  torch::Tensor forward(const torch::Tensor& x);
  SamePadConv3d conv_first{nullptr};
  torch::nn::ModuleList down{nullptr};  // per stage: Sequential(SamePadConv3d, ResBlock3d...)
  torch::nn::GroupNorm final_norm{nullptr};
  torch::nn::Conv3d pre_vq_conv{nullptr};
};
TORCH_MODULE(VQEncoder);

}  // namespace meddiff
